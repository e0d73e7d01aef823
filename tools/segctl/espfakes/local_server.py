"""A fake provider's HTTP server on 127.0.0.1 (a free port), served from a daemon thread.

Subclasses set ``handler`` (a BaseHTTPRequestHandler class; it reaches the fake through its ``fake``
attribute) and ``name``; ``start()``/``stop()`` or ``with fake:`` run it, ``port`` is where it listens.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar, Self


class LocalServer:
    handler: ClassVar[type[BaseHTTPRequestHandler]]
    name: ClassVar[str] = "fake"
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> Self:
        handler = type("Handler", (self.handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            assert self._thread is not None
            self._thread.join(timeout=5)
            self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, f"start the {self.name} first"
        return self._server.server_address[1]
