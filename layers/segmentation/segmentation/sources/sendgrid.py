"""SendGrid Event Webhook: verify the signed ECDSA signature and normalise the batched events.

See docs/webhooks.md#sendgrid and its test vector.

* ``X-Twilio-Email-Event-Webhook-Signature`` = base64 of a DER ECDSA (P-256, SHA-256) signature
  over the ``X-Twilio-Email-Event-Webhook-Timestamp`` header string followed by the raw body. The
  timestamp (epoch seconds) is signed, so it must be within ±300 s of ``now``.
* Public keys come from the secret key ``sendgrid``: base64 DER SubjectPublicKeyInfo (what the
  SendGrid console shows) or PEM; two while rotating; either verifies. A configured value that is
  not an EC public key is skipped; if none is usable every delivery is refused (401).
* The body is a JSON array of events. ``delivered`` -> EMAIL_DELIVERED, ``open``, ``click`` (with
  ``url``), ``bounce`` with type ``bounce`` (or no type) -> EMAIL_BOUNCED, ``spamreport`` ->
  EMAIL_SPAM, ``unsubscribe`` and ``group_unsubscribe`` -> EMAIL_UNSUBSCRIBED. Ignored:
  ``processed``, ``dropped``, ``deferred``, ``bounce`` with type ``blocked`` (a temporary block by
  the receiving server, not a dead address), ``group_resubscribe`` (a suppression group, not
  marketing consent as a whole) and account events.
* Message id = ``sg_message_id`` up to its first "." (delivery events carry
  "<id>.filterNNNN...", engagement events the same prefix), so the delivery and the opens of one
  message share it. Delivery/open/click events without ``sg_message_id`` are ignored: without it
  they cannot count once per message.
* ``occurred_at`` = ``timestamp``; identity = ``email``; campaign = ``marketing_campaign_name`` or
  ``category``.
* Delivery key (logged): a hash of the batch's sorted ``sg_event_id`` values; each event's id is derived from its
  ``sg_event_id``, so a retried event is the same event whatever batch it arrives in.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from ..domain.events import CustomerEvent, EmailProperties, EventType, Identity
from .errors import (
    MalformedPayloadError,
    MethodNotAllowedError,
    SecretNotConfiguredError,
    SignatureMismatchError,
)
from .fields import epoch_time
from .request import Normalised, SecretLookup, WebhookRequest, batch_reason, collect_batch

SOURCE = "sendgrid"
WINDOW = 300
SIGNATURE_HEADER = "x-twilio-email-event-webhook-signature"
TIMESTAMP_HEADER = "x-twilio-email-event-webhook-timestamp"

EVENT_TYPES = {
    "delivered": EventType.EMAIL_DELIVERED,
    "open": EventType.EMAIL_OPENED,
    "click": EventType.EMAIL_CLICKED,
    "bounce": EventType.EMAIL_BOUNCED,
    "spamreport": EventType.EMAIL_SPAM,
    "unsubscribe": EventType.EMAIL_UNSUBSCRIBED,
    "group_unsubscribe": EventType.EMAIL_UNSUBSCRIBED,
}
#: Events that count once per message and therefore need sg_message_id.
PER_MESSAGE = {"delivered", "open", "click"}
IGNORED_EVENTS = {"processed", "dropped", "deferred", "group_resubscribe"}
MAX_TEXT = 256
MAX_URL = 2048


# -- verification ------------------------------------------------------------------------------


def load_public_key(value: bytes) -> ec.EllipticCurvePublicKey | None:
    """An EC public key from base64 DER SubjectPublicKeyInfo or PEM; None if it is neither."""
    text = value.strip()
    try:
        if text.startswith(b"-----BEGIN"):
            key = load_pem_public_key(text)
        else:
            key = load_der_public_key(base64.b64decode(b"".join(text.split()), validate=True))
    except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm):
        return None
    return key if isinstance(key, ec.EllipticCurvePublicKey) else None


def verify(keys: Sequence[bytes], body: bytes, signature: str | None, timestamp: str | None, now: int) -> None:
    """Raise :class:`SignatureMismatchError` unless ``signature`` is a valid ECDSA P-256/SHA-256
    signature of ``timestamp + body`` under one configured key and ``timestamp`` is within ±300 s."""
    if not signature or not signature.strip():
        raise SignatureMismatchError("missing X-Twilio-Email-Event-Webhook-Signature header")
    if not timestamp or not timestamp.strip():
        raise SignatureMismatchError("missing X-Twilio-Email-Event-Webhook-Timestamp header")
    stamp = timestamp.strip()
    if not (timestamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise SignatureMismatchError("X-Twilio-Email-Event-Webhook-Timestamp is not epoch seconds")
    try:
        der = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureMismatchError("X-Twilio-Email-Event-Webhook-Signature is not base64") from None
    public_keys = [k for k in (load_public_key(v) for v in keys) if k is not None]
    if not public_keys:
        raise SecretNotConfiguredError("the configured SendGrid key is not an EC public key (base64 DER or PEM)")
    message = timestamp.encode("ascii") + body
    ok = False
    for key in public_keys:
        try:
            key.verify(der, message, ec.ECDSA(hashes.SHA256()))
            ok = True
        except (InvalidSignature, ValueError, TypeError):
            pass
    if not ok:
        raise SignatureMismatchError("X-Twilio-Email-Event-Webhook-Signature does not match the body")
    if abs(now - int(stamp)) > WINDOW:
        raise SignatureMismatchError(f"X-Twilio-Email-Event-Webhook-Timestamp is more than {WINDOW} s from now")


def parse(request: WebhookRequest, secrets: SecretLookup, now: int) -> Normalised:
    """Verify then normalise one batch of SendGrid events."""
    if request.method != "POST":
        raise MethodNotAllowedError("SendGrid event webhooks are POST")
    request.require_media_type("SendGrid event webhooks", "application/json")
    verify(secrets(SOURCE), request.body, request.header(SIGNATURE_HEADER), request.header(TIMESTAMP_HEADER), now)
    try:
        batch = json.loads(request.body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedPayloadError("body is not valid JSON (or nested too deeply)") from None
    if not isinstance(batch, list):
        raise MalformedPayloadError("body must be a JSON array of events")
    return normalise(batch, request.body)


# -- normalisation ------------------------------------------------------------------------------


def normalise(batch: list, body: bytes) -> Normalised:
    event_list, ignored, keys = collect_batch(batch, _item)
    if keys:
        delivery = "batch:" + hashlib.sha256("\n".join(sorted(keys)).encode("utf-8", "surrogatepass")).hexdigest()[:40]
    else:
        delivery = "empty:" + hashlib.sha256(body).hexdigest()[:40]
    reason = batch_reason(len(batch), ignored)
    return Normalised(f"{SOURCE}#{delivery}", list(event_list), ignored_reason=reason)


def message_id(sg_message_id: str) -> str:
    """``14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0`` -> ``14c5d75ce93``."""
    return sg_message_id.split(".", 1)[0]


def _item(item: Any) -> tuple[str, str, CustomerEvent | None]:
    """(delivery key part, kind, event) for one entry; event None when ignored."""
    if not isinstance(item, dict):
        raise ValueError("each event must be an object")
    sg_event_id = item.get("sg_event_id")
    if isinstance(sg_event_id, str) and 0 < len(sg_event_id) <= MAX_TEXT:
        key = sg_event_id
    else:
        canonical = json.dumps(item, sort_keys=True, ensure_ascii=True, default=str)
        key = "item:" + hashlib.sha256(canonical.encode()).hexdigest()[:40]
        sg_event_id = None
    kind = item.get("event")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        known = isinstance(kind, str) and kind in IGNORED_EVENTS
        return key, kind if known else "unknown event kind", None
    if kind == "bounce":
        bounce_type = item.get("type")
        if isinstance(bounce_type, str) and bounce_type.strip().lower() not in ("", "bounce"):
            return key, "blocked bounce", None
    ts = item.get("timestamp")
    occurred = epoch_time(ts, "timestamp")
    raw_message = item.get("sg_message_id")
    if raw_message is not None and not isinstance(raw_message, str):
        raise ValueError("sg_message_id must be a string")
    mid = message_id(raw_message)[:MAX_TEXT] if raw_message else ""
    if not mid and kind in PER_MESSAGE:
        return key, f"{kind} without sg_message_id", None
    url = item.get("url") if kind == "click" else None
    if url is not None and not isinstance(url, str):
        raise ValueError("url must be a string")
    email = item.get("email")
    if email is not None and not isinstance(email, str):
        raise ValueError("email must be a string")
    identity = Identity(email=email or None)
    if identity.is_empty():
        return key, "no recipient email", None
    fact = sg_event_id or f"{mid}|{kind}|{int(ts)}|{url or ''}"
    properties = EmailProperties(
        message_id=mid or f"event:{fact}"[:MAX_TEXT], campaign=_campaign(item),
        url=url[:MAX_URL] if url else None,
    )
    event = CustomerEvent(
        event_id=CustomerEvent.make_id(SOURCE, fact), source=SOURCE, type=EVENT_TYPES[kind],
        occurred_at=occurred, shop=None, identity=identity, properties=properties,
    )
    return key, kind, event


def _campaign(item: dict) -> str | None:
    name = item.get("marketing_campaign_name")
    if isinstance(name, str) and name:
        return name[:MAX_TEXT]
    category = item.get("category")
    if isinstance(category, str) and category:
        return category[:MAX_TEXT]
    if isinstance(category, list):
        names = [c for c in category if isinstance(c, str) and c]
        return ",".join(names)[:MAX_TEXT] or None
    return None
