"""Klaviyo system webhooks: verify ``Klaviyo-Signature`` and normalise the batched email events.

See docs/webhooks.md#klaviyo and its test vector.

* ``Klaviyo-Signature`` = hex(HMAC-SHA256(secret, raw body followed by the ``Klaviyo-Timestamp``
  header string)), no separator. The timestamp is signed, so a ±300 s window against ``now`` is
  enforced. Its format is UNCONFIRMED: an RFC 1123 HTTP-date ("Tue, 14 May 2024 14:22:33 GMT"),
  ISO 8601, or plain epoch seconds are all understood; anything else is refused (401).
* ``Klaviyo-Webhook-Id`` must equal ``meta.klaviyo_webhook_id`` of the signed body (401 otherwise).
* One delivery carries ``data[]`` of ``{external_id, topic, payload}``; ``payload`` has the Get
  Event API shape (``data.attributes.datetime``, ``data.attributes.event_properties``,
  ``data.relationships.profile.data.id``, optional ``included[]`` profile with its email).

Choices where Klaviyo's documentation is silent (UNCONFIRMED):

* Identity: the email (and phone) of the profile in ``payload.included[]`` when Klaviyo embeds it,
  and always the Klaviyo profile id as ``customer_ids={"klaviyo": id}`` (scoped to the account),
  so events that carry only the profile id still reach the same profile once it is linked.
* Message id (what makes delivered/opened/clicked count once per message): the event property
  ``$message`` (the campaign or flow message id, present on every email event in Klaviyo's
  examples); else the message part of ``$_cohort$message_send_cohort`` ("<send ts>:<message id>");
  else the part of ``$event_id`` before the first ":"; else the Klaviyo event id, which is unique
  per event, so such an open would count as its own message.
* Bounces: ``Bounce Type`` "soft" (or anything but "hard") is ignored; a bounce without a type
  counts as hard.
* ``occurred_at`` is ``attributes.datetime`` (falls back to ``attributes.timestamp``, epoch
  seconds); ``meta.timestamp`` and the header are delivery times and never used for it.
* Delivery key (logged): the batch's ``external_id`` values (one: the id itself; several: a hash of
  the sorted ids). Every event's id is stable on its own, so a retried event counts once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from ..domain.events import (
    CustomerEvent,
    CustomerProperties,
    EmailConsent,
    EmailProperties,
    EventType,
    Identity,
)
from .errors import MalformedPayloadError, MethodNotAllowedError, SignatureMismatchError
from .fields import epoch_time, utc_time
from .request import Normalised, SecretLookup, WebhookRequest, batch_reason, collect_batch, hmac_matches

SOURCE = "klaviyo"
#: Signed-timestamp tolerance, seconds, either side of ``now``.
WINDOW = 300
SIGNATURE_HEADER = "klaviyo-signature"
TIMESTAMP_HEADER = "klaviyo-timestamp"
WEBHOOK_ID_HEADER = "klaviyo-webhook-id"

#: Klaviyo metric (topic suffix, or metric name in snake case) -> canonical type.
EMAIL_TOPICS = {
    "received_email": EventType.EMAIL_DELIVERED,
    "opened_email": EventType.EMAIL_OPENED,
    "clicked_email": EventType.EMAIL_CLICKED,
    "bounced_email": EventType.EMAIL_BOUNCED,
    "marked_email_as_spam": EventType.EMAIL_SPAM,
    "unsubscribed_from_email_marketing": EventType.EMAIL_UNSUBSCRIBED,
}
SUBSCRIBED_TOPIC = "subscribed_to_email_marketing"
USED_TOPICS = frozenset(EMAIL_TOPICS) | {SUBSCRIBED_TOPIC}
#: Other spellings seen in Klaviyo's help-centre examples ("event: email_delivered").
TOPIC_ALIASES = {
    "email_delivered": "received_email",
    "email_opened": "opened_email",
    "email_clicked": "clicked_email",
    "email_bounced": "bounced_email",
    "email_marked_as_spam": "marked_email_as_spam",
}
MAX_TEXT = 256
MAX_URL = 2048


# -- verification ------------------------------------------------------------------------------


def parse_timestamp(value: str) -> int:
    """Epoch seconds of a ``Klaviyo-Timestamp`` value: RFC 1123 date, ISO 8601, or epoch seconds."""
    text = value.strip()
    if not text or not text.isascii() or len(text) > 64:
        raise ValueError("empty or non-ASCII timestamp")
    if text.isdigit():
        seconds = int(text)
        return seconds // 1000 if seconds > 100_000_000_000 else seconds  # milliseconds, defensively
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        try:
            parsed = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError, OverflowError):
            raise ValueError("timestamp is neither an HTTP-date nor ISO 8601") from None
        if parsed is None:  # older Pythons return None for garbage
            raise ValueError("timestamp is neither an HTTP-date nor ISO 8601") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return int(parsed.timestamp())
    except (OverflowError, ValueError, OSError):
        raise ValueError("timestamp out of range") from None


def verify(secrets: Sequence[bytes], body: bytes, signature: str | None, timestamp: str | None, now: int) -> None:
    """Raise :class:`SignatureMismatchError` unless ``signature`` is hex(HMAC-SHA256(secret, body +
    timestamp)) for one of ``secrets`` and ``timestamp`` is within ±300 s of ``now``."""
    if not signature or not signature.strip():
        raise SignatureMismatchError("missing Klaviyo-Signature header")
    if not timestamp or not timestamp.strip():
        raise SignatureMismatchError("missing Klaviyo-Timestamp header")
    if not timestamp.isascii():
        raise SignatureMismatchError("Klaviyo-Timestamp is not ASCII")
    try:
        received = bytes.fromhex(signature.strip())
    except ValueError:
        raise SignatureMismatchError("Klaviyo-Signature is not hex") from None
    if not hmac_matches(secrets, body + timestamp.encode("ascii"), received):
        raise SignatureMismatchError("Klaviyo-Signature does not match the body and timestamp")
    try:
        sent_at = parse_timestamp(timestamp)
    except ValueError:
        raise SignatureMismatchError("Klaviyo-Timestamp is not a date we understand") from None
    if abs(now - sent_at) > WINDOW:
        raise SignatureMismatchError(f"Klaviyo-Timestamp is more than {WINDOW} s from now (replay?)")


def parse(request: WebhookRequest, secrets: SecretLookup, now: int) -> Normalised:
    """Verify then normalise one delivery of a batch of Klaviyo events."""
    if request.method != "POST":
        raise MethodNotAllowedError("Klaviyo webhooks are POST")
    request.require_media_type("Klaviyo webhooks", "application/json")
    verify(secrets(SOURCE), request.body, request.header(SIGNATURE_HEADER), request.header(TIMESTAMP_HEADER), now)
    webhook_id = (request.header(WEBHOOK_ID_HEADER) or "").strip()
    if not webhook_id:
        raise SignatureMismatchError("missing Klaviyo-Webhook-Id header")
    try:
        payload = json.loads(request.body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise MalformedPayloadError("body is not valid JSON (or nested too deeply)") from None
    if not isinstance(payload, dict):
        raise MalformedPayloadError("body must be a JSON object")
    meta = payload.get("meta")
    if not isinstance(meta, dict):
        raise MalformedPayloadError("meta must be an object")
    if meta.get("klaviyo_webhook_id") != webhook_id:
        raise SignatureMismatchError("Klaviyo-Webhook-Id does not match meta.klaviyo_webhook_id")
    return normalise(payload, request.body)


# -- normalisation ------------------------------------------------------------------------------


def normalise(payload: dict, body: bytes) -> Normalised:
    data = payload.get("data")
    if not isinstance(data, list):
        raise MalformedPayloadError("data must be a list of events")
    account = payload["meta"].get("klaviyo_account_id")
    shop = account if isinstance(account, str) and 0 < len(account) <= 128 else None
    def one(item):
        key = _delivery_key(item)
        return (key, *_item(item, shop))

    event_list, ignored, keys = collect_batch(data, one, label=lambda i: f"data[{i}]")
    if not keys:
        delivery = "empty:" + hashlib.sha256(body).hexdigest()[:40]
    elif len(keys) == 1:
        delivery = keys[0]
    else:
        delivery = "batch:" + hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:40]
    reason = batch_reason(len(data), ignored)
    return Normalised(f"{SOURCE}#{delivery}", list(event_list), ignored_reason=reason)




def _delivery_key(item: Any) -> str:
    if not isinstance(item, dict):
        raise ValueError("each event must be an object")
    external_id = item.get("external_id")
    if isinstance(external_id, str | int) and not isinstance(external_id, bool) and 0 < len(str(external_id)) <= 128:
        return str(external_id)
    canonical = json.dumps(item, sort_keys=True, ensure_ascii=True, default=str)
    return "item:" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def topic_kind(topic: Any) -> str | None:
    """``event:klaviyo.opened_email`` / ``event: email_opened`` / ``Opened Email`` -> ``opened_email``."""
    if not isinstance(topic, str):
        return None
    text = topic.strip().lower()
    if text.startswith("event:"):
        text = text[len("event:"):].strip()
    if text.startswith("klaviyo."):
        text = text[len("klaviyo."):]
    text = "_".join(text.replace("-", " ").split())
    return TOPIC_ALIASES.get(text, text)


def _item(item: dict, shop: str | None) -> tuple[str, CustomerEvent | None]:
    """(kind, event) for one ``data[]`` entry; event None when the kind is not used or nobody is named."""
    kind = topic_kind(item.get("topic"))
    if kind is None:
        return "no topic", None
    if kind not in USED_TOPICS:
        return "topic not used", None
    payload = _object(item.get("payload"), "payload")
    event = _object(payload.get("data"), "payload.data")
    attributes = _object(event.get("attributes"), "payload.data.attributes")
    props = attributes.get("event_properties")
    props = props if isinstance(props, dict) else {}
    event_id = _text(event.get("id"), "payload.data.id") or _text(item.get("external_id"), "external_id")
    if not event_id:
        raise ValueError("missing payload.data.id")
    occurred = _occurred_at(attributes)
    identity, profile = _identity(payload, event)
    if identity.is_empty():
        return "no profile email or id", None
    if kind == "bounced_email":
        bounce_type = props.get("Bounce Type")
        if isinstance(bounce_type, str) and bounce_type.strip().lower() not in ("", "hard"):
            return "soft bounce", None
    make_id = CustomerEvent.make_id(SOURCE, shop, "event", event_id)
    if kind == SUBSCRIBED_TOPIC:
        first, last = (_text(profile.get(k), k, cap=True) for k in ("first_name", "last_name"))
        properties = CustomerProperties(
            first_name=first, last_name=last,
            email_consent=EmailConsent(state="subscribed", updated_at=occurred),
        )
        return kind, CustomerEvent(event_id=make_id, source=SOURCE, type=EventType.CUSTOMER, occurred_at=occurred,
                                   shop=shop, identity=identity, properties=properties)
    etype = EMAIL_TOPICS[kind]
    url = props.get("URL") if etype == EventType.EMAIL_CLICKED else None
    properties = EmailProperties(
        message_id=_message_id(props) or f"event:{event_id}",
        campaign=_text(props.get("Campaign Name"), "Campaign Name", cap=True),
        url=url[:MAX_URL] if isinstance(url, str) and url else None,
    )
    return kind, CustomerEvent(event_id=make_id, source=SOURCE, type=etype, occurred_at=occurred, shop=shop,
                               identity=identity, properties=properties)


# -- field helpers -------------------------------------------------------------------------------


def _object(value: Any, field: str) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"{field} must be an object")
    return value


def _text(value: Any, field: str, cap: bool = False) -> str | None:
    """A short string (ids, names); ints are accepted as ids; None/"" -> None."""
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{field} must be a string")
    text = str(value)
    if len(text) > MAX_TEXT:
        if not cap:
            raise ValueError(f"{field} is longer than {MAX_TEXT} characters")
        text = text[:MAX_TEXT]
    return text


def _occurred_at(attributes: dict) -> datetime:
    value = attributes.get("datetime")
    if value is None or value == "":
        epoch = attributes.get("timestamp")
        if epoch is None or epoch == "":
            raise ValueError("missing attributes.datetime")
        return epoch_time(epoch, "attributes.timestamp")
    return utc_time(value, "attributes.datetime")


def _identity(payload: dict, event: dict) -> tuple[Identity, dict]:
    """The profile's identity (email/phone when embedded, Klaviyo profile id) and its attributes."""
    profile_id = None
    relationships = event.get("relationships")
    if isinstance(relationships, dict):
        rel = relationships.get("profile")
        data = rel.get("data") if isinstance(rel, dict) else None
        if isinstance(data, dict):
            profile_id = _text(data.get("id"), "relationships.profile.data.id")
    attributes: dict = {}
    included = payload.get("included")
    if isinstance(included, list):
        for entry in included:
            if not isinstance(entry, dict) or entry.get("type") != "profile":
                continue
            entry_id = _text(entry.get("id"), "included.id")
            if profile_id is None or entry_id == profile_id:
                profile_id = profile_id or entry_id
                found = entry.get("attributes")
                attributes = found if isinstance(found, dict) else {}
                break
    email, phone = attributes.get("email"), attributes.get("phone_number")
    if email is not None and not isinstance(email, str):
        raise ValueError("profile email must be a string")
    if phone is not None and not isinstance(phone, str):
        raise ValueError("profile phone_number must be a string")
    identity = Identity(email=email or None, phone=phone or None, customer_ids={SOURCE: profile_id} if profile_id else {})
    return identity, attributes


def _message_id(props: dict) -> str | None:
    message = props.get("$message")
    if isinstance(message, str | int) and not isinstance(message, bool) and 0 < len(str(message)) <= MAX_TEXT:
        return str(message)
    cohort = props.get("$_cohort$message_send_cohort")
    if isinstance(cohort, str) and ":" in cohort:
        part = cohort.rsplit(":", 1)[1].strip()
        if 0 < len(part) <= MAX_TEXT:
            return part
    klaviyo_event_id = props.get("$event_id")
    if isinstance(klaviyo_event_id, str) and ":" in klaviyo_event_id:
        part = klaviyo_event_id.split(":", 1)[0].strip()
        if 0 < len(part) <= MAX_TEXT:
            return part
    return None
