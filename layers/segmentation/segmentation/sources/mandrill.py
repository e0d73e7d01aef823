"""Mailchimp Transactional (Mandrill): verify ``X-Mandrill-Signature`` and normalise message events.

See docs/webhooks.md#mandrill and its test vector.

* ``X-Mandrill-Signature`` = base64(HMAC-SHA1(webhook key, URL + for each POST parameter sorted by
  name: name + decoded value)). URL is the webhook URL exactly as configured in Mandrill, read from
  the secret key ``mandrill_url`` (never rebuilt from the request: API Gateway changes host, stage
  and encoding); webhook keys from the secret key ``mandrill``. A parameter that repeats counts
  with its last value (as django-anymail does); Mandrill sends exactly one, ``mandrill_events``.
* The signature covers no timestamp: there is no replay window; a duplicate carries the same
  stable event ids, and counts once.
* Handshakes (never write): ``HEAD`` -> 200; the empty test batch ``mandrill_events=[]`` that
  Mandrill signs with the generic key ``test-webhook`` when it adds a URL -> 200, no events.
* ``mandrill_events`` is a JSON array (up to 1,000 events). Message events:
  ``send``/``delivered`` -> EMAIL_DELIVERED (both carry the message ``_id``, so the message counts
  once), ``open``, ``click`` (with its ``url``), ``hard_bounce`` -> EMAIL_BOUNCED, ``spam``,
  ``unsub``. Ignored: ``soft_bounce`` and ``deferral`` (temporary), ``reject`` (Mandrill refused to
  send because the address is already on its rejection/deny list or the sender is not allowed:
  not a choice of the recipient, and not a new fact about the address), sync (allow/deny list)
  and inbound events.
* ``occurred_at`` = ``ts`` (epoch seconds); identity = ``msg.email``; message id = ``_id``;
  campaign = the message's tags (Mandrill has no campaigns).
* Delivery key (logged): a hash of the sorted per-event keys ``_id|event|ts|url`` of the batch.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

from ..domain.events import CustomerEvent, EmailProperties, EventType, Identity
from .errors import MalformedPayloadError, MethodNotAllowedError, SignatureMismatchError
from .fields import epoch_time
from .request import Handshake, Normalised, SecretLookup, WebhookRequest, collect_batch, hmac_matches

SOURCE = "mandrill"
URL_SECRET = "mandrill_url"
SIGNATURE_HEADER = "x-mandrill-signature"
#: The generic key Mandrill signs its empty test batch with when a webhook URL is added.
TEST_KEY = b"test-webhook"
FORM_TYPE = "application/x-www-form-urlencoded"
EVENTS_PARAM = "mandrill_events"
MAX_PARAMS = 20

EVENT_TYPES = {
    "send": EventType.EMAIL_DELIVERED,
    "delivered": EventType.EMAIL_DELIVERED,
    "open": EventType.EMAIL_OPENED,
    "click": EventType.EMAIL_CLICKED,
    "hard_bounce": EventType.EMAIL_BOUNCED,
    "spam": EventType.EMAIL_SPAM,
    "unsub": EventType.EMAIL_UNSUBSCRIBED,
}
#: Message events acknowledged without a canonical event, and why.
IGNORED_EVENTS = {
    "soft_bounce": "soft bounce",
    "deferral": "deferral",
    "reject": "reject (not the recipient's choice)",
    "inbound": "inbound",
}
MAX_TEXT = 256
MAX_URL = 2048


# -- verification ------------------------------------------------------------------------------


def form_params(body: bytes) -> dict[str, str]:
    """The decoded POST parameters (last value wins), or raise ValueError/UnicodeDecodeError."""
    text = body.decode("utf-8")
    pairs = parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=MAX_PARAMS)
    return dict(pairs)


def signed_data(url: str, params: dict[str, str]) -> bytes:
    """URL followed by name + value of each parameter sorted by name, as Mandrill signs it."""
    return (url + "".join(name + value for name, value in sorted(params.items()))).encode("utf-8", "surrogatepass")


def verify(keys: Sequence[bytes], urls: Sequence[str], params: dict[str, str], signature: str | None) -> bool:
    """True when ``signature`` is base64(HMAC-SHA1(key, signed data)) for one key and configured URL;
    raise :class:`SignatureMismatchError` when the header is missing or not base64."""
    if not signature or not signature.strip():
        raise SignatureMismatchError("missing X-Mandrill-Signature header")
    try:
        received = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureMismatchError("X-Mandrill-Signature is not base64") from None
    ok = False
    for url in urls:
        ok |= hmac_matches(keys, signed_data(url, params), received, hashlib.sha1)
    return ok


def _configured_urls(secrets: SecretLookup) -> list[str]:
    urls = []
    for raw in secrets(URL_SECRET):
        try:
            urls.append(raw.decode("utf-8").strip())
        except UnicodeDecodeError:
            continue
    if not urls:
        raise SignatureMismatchError("the configured Mandrill webhook URL is not valid UTF-8")
    return urls


def parse(request: WebhookRequest, secrets: SecretLookup, now: int) -> Normalised | Handshake:
    """Answer Mandrill's URL check, or verify then normalise one batch of events."""
    if request.method == "HEAD":
        return Handshake(200, "", "text/plain")
    if request.method != "POST":
        raise MethodNotAllowedError("Mandrill webhooks are POST (HEAD when the URL is added)")
    request.require_media_type("Mandrill webhooks", FORM_TYPE)
    signature = request.header(SIGNATURE_HEADER)
    if not signature or not signature.strip():
        raise SignatureMismatchError("missing X-Mandrill-Signature header")
    try:
        params = form_params(request.body)
    except (UnicodeDecodeError, ValueError):
        # The signature covers the decoded parameters: a body we cannot decode cannot be verified.
        raise SignatureMismatchError("body is not a form-encoded request that can be verified") from None
    keys, urls = secrets(SOURCE), _configured_urls(secrets)
    if not verify(keys, urls, params, signature):
        if verify([TEST_KEY], urls, params, signature) and _is_empty_batch(params):
            return Handshake(200, "", "text/plain")
        raise SignatureMismatchError("X-Mandrill-Signature does not match the URL and parameters")
    if EVENTS_PARAM not in params:
        raise MalformedPayloadError(f"missing {EVENTS_PARAM} parameter")
    try:
        batch = json.loads(params[EVENTS_PARAM])
    except (ValueError, RecursionError):
        raise MalformedPayloadError(f"{EVENTS_PARAM} is not valid JSON (or nested too deeply)") from None
    if not isinstance(batch, list):
        raise MalformedPayloadError(f"{EVENTS_PARAM} must be a JSON array")
    if not batch:
        return Handshake(200, "", "text/plain")  # an empty batch carries nothing to store
    return normalise(batch)


def _is_empty_batch(params: dict[str, str]) -> bool:
    try:
        return json.loads(params.get(EVENTS_PARAM, "")) == []
    except (ValueError, RecursionError):
        return False


# -- normalisation ------------------------------------------------------------------------------


def normalise(batch: list) -> Normalised:
    event_list, ignored, keys = collect_batch(batch, _item)
    delivery = hashlib.sha256("\n".join(sorted(keys)).encode("utf-8", "surrogatepass")).hexdigest()[:40]
    reason = None
    if ignored:
        detail = ", ".join(f"{kind} ({n})" for kind, n in sorted(ignored.items()))
        reason = f"ignored {sum(ignored.values())} of {len(batch)} events: {detail}"
    return Normalised(f"{SOURCE}#batch:{delivery}", list(event_list), ignored_reason=reason)


def _item(item: Any) -> tuple[str, str, CustomerEvent | None]:
    """(delivery key part, kind, event) for one entry; event None when ignored."""
    if not isinstance(item, dict):
        raise ValueError("each event must be an object")
    kind = item.get("event")
    if not isinstance(kind, str) or kind not in EVENT_TYPES:
        canonical = json.dumps(item, sort_keys=True, ensure_ascii=True, default=str)
        key = "item:" + hashlib.sha256(canonical.encode()).hexdigest()[:40]
        if isinstance(kind, str) and kind in IGNORED_EVENTS:
            return key, IGNORED_EVENTS[kind], None
        if "type" in item and "action" in item:
            return key, "sync event", None
        return key, "unknown event kind", None
    message_id = _text(item.get("_id"), "_id")
    if not message_id:
        raise ValueError("missing _id")
    ts = item.get("ts")
    occurred = epoch_time(ts, "ts")
    url = item.get("url") if kind == "click" else None
    if url is not None and not isinstance(url, str):
        raise ValueError("url must be a string")
    url = url[:MAX_URL] if url else None
    key = f"{message_id}|{kind}|{int(ts)}|{url or ''}"
    msg = item.get("msg")
    if not isinstance(msg, dict):
        raise ValueError("msg must be an object")
    email = msg.get("email")
    if email is not None and not isinstance(email, str):
        raise ValueError("msg.email must be a string")
    identity = Identity(email=email or None)
    if identity.is_empty():
        return key, "no recipient email", None
    etype = EVENT_TYPES[kind]
    properties = EmailProperties(message_id=message_id, campaign=_campaign(msg.get("tags")), url=url)
    event = CustomerEvent(
        event_id=CustomerEvent.make_id(SOURCE, message_id, kind, int(ts), url),
        source=SOURCE, type=etype, occurred_at=occurred, shop=None, identity=identity, properties=properties,
    )
    return key, kind, event


def _text(value: Any, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a string")
    if len(value) > MAX_TEXT:
        raise ValueError(f"{field} is longer than {MAX_TEXT} characters")
    return value


def _campaign(tags: Any) -> str | None:
    if not isinstance(tags, list):
        return None
    names = [t for t in tags if isinstance(t, str) and t]
    return ",".join(names)[:MAX_TEXT] or None
