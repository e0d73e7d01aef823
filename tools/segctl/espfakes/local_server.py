"""A fake provider's HTTP server on 127.0.0.1 (a free port), served from a daemon thread.

Subclasses implement :meth:`LocalServer.respond` (one request in, status, headers and body bytes out)
and set ``name``; ``start()``/``stop()`` or ``with fake:`` run it, ``port`` is where it listens.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


@dataclass(frozen=True)
class Refusal:
    """A request the fake refused as the provider would not accept it (``fake.invalid``)."""

    method: str
    path: str
    status: int
    reason: str


class _Handler(BaseHTTPRequestHandler):
    fake: Any  # the LocalServer, set per server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        status, headers, data = self.fake.respond(self.command, self.path, self.headers, raw)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve


class LocalServer:
    handler: ClassVar[type[BaseHTTPRequestHandler]] = _Handler
    name: ClassVar[str] = "fake"

    def respond(self, method: str, target: str, headers: Any, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        """One request (``target`` is the path with its query) -> status, headers, body."""
        raise NotImplementedError
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
