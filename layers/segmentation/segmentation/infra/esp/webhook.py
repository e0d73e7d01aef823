"""The generic webhook destination: each segment membership change POSTed to a URL, signed per
`Standard Webhooks <https://www.standardwebhooks.com/>`_.

Every message is one POST whose JSON body is the message itself, with three headers:

* ``webhook-id``: the message's stable ``id``. A batch the queue delivers again is sent again with
  the same ids, so a receiver deduplicates on this header;
* ``webhook-timestamp``: when it was signed, in unix seconds (receivers refuse one more than about
  five minutes away from their clock, so it is "now", not the change's time, which is in the body);
* ``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256 of ``{id}.{timestamp}.{body}``, keyed by
  the secret's bytes (the base64 after ``whsec_``).

Signing is the few lines of :mod:`hmac` below rather than the ``standardwebhooks`` package: the
package verifies at least as much as it signs, its ``sign()`` would still need the secret checked
here (it decodes a garbled secret without complaint), and a dependency in the layer has to earn its
place. The tests check every delivery with the package's own ``Webhook(secret).verify``.

Sending reuses :class:`~segmentation.infra.esp.http.JsonApi`'s connection pool and retries (429 with
``Retry-After``, 5xx, network errors; bounded waits). After them:

* 2xx: delivered;
* 410 Gone: the receiver asked us to stop: :class:`WebhookGoneError` (fix or remove the
  destination in destinations.yaml);
* anything else (5xx or 429 still, 401, 400, 413, a redirect, ...):
  :class:`~segmentation.service.ports.DestinationUnavailableError` naming the status. The batch
  stays in its queue either way; messages already delivered are sent again with it, and the
  receiver drops them by ``webhook-id``.

Never logs nor puts into an error the secret or a body (they carry emails); errors name the host,
not the whole URL (a query string may hold a token).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ...service.ports import DestinationUnavailableError
from .http import RETRIED_STATUSES, JsonApi

SECRET_PREFIX = "whsec_"
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# A webhook-id goes into a header and into the signed content: printable ASCII, no spaces.
_MESSAGE_ID = re.compile(r"[\x21-\x7e]{1,256}")


class WebhookGoneError(DestinationUnavailableError):
    """The receiver answered 410 Gone: it asks not to be sent anything any more. A configuration
    problem, not an outage: remove the destination from destinations.yaml (or give it the receiver's
    new url). Until then its changes wait in the queue like any undelivered batch."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret ``whsec_<base64>`` (padding optional, as the
    receivers' libraries accept it). ValueError, never showing the secret, for anything else."""
    if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
        raise ValueError(
            "the webhook secret must be 'whsec_' followed by base64 (a Standard Webhooks secret): copy it "
            "whole from the receiver's settings, or make one ('whsec_' + base64 of 32 random bytes) and give "
            "the same to the receiver")
    encoded = secret[len(SECRET_PREFIX):]
    unpadded = encoded.rstrip("=")
    try:
        if not _BASE64.fullmatch(encoded) or len(unpadded) % 4 == 1:
            raise binascii.Error
        key = base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except binascii.Error:
        raise ValueError(
            "the webhook secret after 'whsec_' is not valid base64 (standard alphabet A-Z a-z 0-9 + /, "
            "optional '=' padding): it was probably cut or altered when copied; copy it again from the "
            "receiver's settings") from None
    if not key:
        raise ValueError("the webhook secret is empty after 'whsec_': copy the whole secret from the receiver's settings")
    return key


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header value: ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``."""
    digest = hmac.new(key, b"%s.%d.%s" % (message_id.encode(), timestamp, body), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def encode(message: Mapping[str, Any]) -> bytes:
    """The body of one message: compact JSON, ASCII (what is sent is exactly what is signed)."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode()


class WebhookDestinationClient:
    """POSTs each message to ``url``, signed with ``secret`` (``whsec_<base64>``).

    ``http_options`` go to :class:`~segmentation.infra.esp.http.JsonApi` (``attempts``,
    ``backoff_factor``, ``backoff_max``, ``max_wait``, ``timeout``, ``pool_size``); ``clock`` gives
    the signing time in unix seconds (tests inject one)."""

    def __init__(self, url: str, secret: str, *, clock: Callable[[], int] = lambda: int(time.time()),
                 **http_options: Any) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("the webhook url must be an absolute https:// url (see docs/destinations.md)")
        self._key = secret_key(secret)
        self.url = url
        self.clock = clock
        self.name = f"webhook {parts.hostname}"
        self._api = JsonApi(url, {}, name=self.name, **http_options)

    def __repr__(self) -> str:  # never the secret
        return f"WebhookDestinationClient({self.name!r})"

    def send(self, messages: Sequence[Mapping[str, Any]]) -> int:
        """POST every message, in order, one request each; return how many HTTP requests that took
        (retries included). Raises :class:`WebhookGoneError` or
        :class:`~segmentation.service.ports.DestinationUnavailableError` at the first message not
        delivered (see the module docstring)."""
        for message in messages:  # all checked before anything is sent
            message_id = message.get("id") if isinstance(message, Mapping) else None
            if not isinstance(message_id, str) or not _MESSAGE_ID.fullmatch(message_id):
                raise ValueError("every webhook message needs an 'id' of 1 to 256 printable ASCII characters, no "
                                 "spaces (it is a header): hash a natural key that may not be ASCII")
        requests = 0
        for delivered, message in enumerate(messages):
            requests += self._post(message, delivered, len(messages))
        return requests

    def _post(self, message: Mapping[str, Any], delivered: int, total: int) -> int:
        message_id = message["id"]
        body = encode(message)
        timestamp = int(self.clock())
        headers = {
            **self._api.headers,
            "webhook-id": message_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, message_id, timestamp, body),
        }
        where = f"{self.name}: message {message_id} ({delivered} of {total} delivered before it)"
        raw, requests = self._api.send("POST", self.url, body, headers, where)
        if 200 <= raw.status < 300:
            return requests
        if raw.status == 410:
            raise WebhookGoneError(
                f"{where}: the receiver answered 410 Gone, it asks to be sent nothing more: remove the "
                "destination from destinations.yaml or give it the receiver's new url; its changes wait "
                "in the queue meanwhile")
        if raw.status in RETRIED_STATUSES:
            retry_after = raw.headers.get("Retry-After")
            wait = f" (Retry-After: {retry_after[:40]})" if retry_after else ""
            raise DestinationUnavailableError(f"{where}: still answered {raw.status}{wait} after {requests} requests")
        raise DestinationUnavailableError(
            f"{where}: answered {raw.status} (401/403: does the receiver have the same secret?); the changes "
            "wait in the queue meanwhile")
