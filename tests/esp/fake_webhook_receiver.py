"""A local receiver of Standard Webhooks deliveries, checking each with the ``standardwebhooks``
package's own ``Webhook(secret).verify(body, headers)`` (the reference implementation's contract).

``FakeWebhookReceiver`` is an HTTP server (127.0.0.1, a free port; :class:`segctl.espfakes.local_server.LocalServer`)
for the webhook destination's tests (issue 12). Each POST to ``path`` is handled in this order:

1. injected faults (``fail_next``, to any delivery or to one ``webhook-id``): answered with the
   fault's status (and ``Retry-After``) before anything else, unless ``after_accepting``: then steps 2-3 happen first and the answer is lost,
   as when a receiver times out after storing (the sender retries what was in fact delivered);
2. ``tamper(body)``, when set: a man in the middle changing the body before the check;
3. the signature check: refused deliveries are kept in ``refused`` (answer 401); a verified one is
   kept in ``accepted`` the first time its ``webhook-id`` is seen, and in ``duplicates`` after that
   (answered 200 both times, as the spec asks of a receiver deduplicating).

Every request is in ``requests`` (webhook-id, status); ``messages`` are the accepted bodies, parsed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from segctl.espfakes.local_server import LocalServer
from standardwebhooks import Webhook, WebhookVerificationError

# 32 random bytes in base64 after "whsec_": what a receiver gives its senders.
DEFAULT_SECRET = "whsec_RtW1/m8ailVx4idGKCNxOtocwnDQ7s3hJls4FX3+2/s="
OTHER_SECRET = "whsec_NaKIxMzAJ33WV2ErpBJ63tkIFMqZGMSvThitGGSkR90="


@dataclass(frozen=True)
class Delivery:
    """A verified delivery, as received: the headers and the exact body bytes, for replays."""

    webhook_id: str
    timestamp: str
    signature: str
    body: bytes
    headers: dict[str, str]

    @property
    def message(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Refusal:
    webhook_id: str | None
    reason: str


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    webhook_id: str | None
    status: int


@dataclass(frozen=True)
class _Fault:
    status: int
    retry_after: int | None
    after_accepting: bool
    webhook_id: str | None  # None: any delivery


class FakeWebhookReceiver(LocalServer):
    """Start with ``with FakeWebhookReceiver() as receiver:``; send to ``receiver.url``."""

    def __init__(self, secret: str = DEFAULT_SECRET, *, path: str = "/hooks/segments"):
        self.secret = secret
        self.path = path
        self._webhook = Webhook(secret)
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self.tamper: Callable[[bytes], bytes] | None = None
        self.accepted: list[Delivery] = []
        self.duplicates: list[Delivery] = []
        self.refused: list[Refusal] = []
        self.requests: list[Request] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    @property
    def messages(self) -> list[Any]:
        """The accepted messages, once each, in the order they first arrived."""
        with self._lock:
            return [d.message for d in self.accepted]

    def fail_next(self, n: int = 1, status: int = 429, retry_after: int | None = None, *,
                  after_accepting: bool = False, webhook_id: str | None = None) -> None:
        """Answer the next ``n`` POSTs (of the delivery ``webhook_id`` only, when given) with ``status``;
        a 429 gets ``Retry-After: retry_after``, 0 unless given. Faults are used in the order given."""
        if status == 429 and retry_after is None:
            retry_after = 0
        with self._lock:
            self._faults.extend([_Fault(status, retry_after, after_accepting, webhook_id)] * n)

    # -- request handling -------------------------------------------------------------------------

    def respond(self, method: str, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        status, out = self._handle(method, path, dict(headers.items()), body)
        return status, out, b""

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        webhook_id = next((v for k, v in headers.items() if k.lower() == "webhook-id"), None)
        status, extra = self._answer(method, path, headers, body, webhook_id)
        with self._lock:
            self.requests.append(Request(method, path, webhook_id, status))
        return status, extra

    def _answer(self, method: str, path: str, headers: dict[str, str], body: bytes,
                webhook_id: str | None) -> tuple[int, dict[str, str]]:
        if path != self.path:
            return 404, {}
        if method != "POST":
            return 405, {"Allow": "POST"}
        with self._lock:
            fault = next((f for f in self._faults if f.webhook_id in (None, webhook_id)), None)
            if fault is not None:
                self._faults.remove(fault)
        fault_headers = {} if fault is None or fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
        if fault is not None and not fault.after_accepting:
            return fault.status, fault_headers
        if self.tamper is not None:
            body = self.tamper(body)
        try:
            self._webhook.verify(body, headers)
        except (WebhookVerificationError, ValueError, UnicodeDecodeError) as e:
            # ValueError: a signature header without its "v1," (the package splits it without a check)
            with self._lock:
                self.refused.append(Refusal(webhook_id, f"{type(e).__name__}: {e}"))
            return 401, {}
        lower = {k.lower(): v for k, v in headers.items()}
        delivery = Delivery(lower["webhook-id"], lower["webhook-timestamp"], lower["webhook-signature"], body, lower)
        with self._lock:
            seen = any(d.webhook_id == delivery.webhook_id for d in self.accepted)
            (self.duplicates if seen else self.accepted).append(delivery)
        if fault is not None:
            return fault.status, fault_headers
        return 200, {}


FakeWebhookReceiver.name = "fake-webhook-receiver"
