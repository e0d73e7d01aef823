"""Mailchimp Marketing audience webhooks: check the URL token, normalise member events.

See docs/webhooks.md#mailchimp. Audience webhooks carry **no signature**: Mailchimp's own
advice is a secret in the URL, so the webhook is configured as
``https://<api>/webhooks/mailchimp?token=<secret>`` and the token is compared, in constant
time, with the configured value(s) of the ``mailchimp`` key. The token is never echoed in a
reason or logged.

* ``GET`` is Mailchimp's URL validation (User-Agent ``MailChimp.com WebHook Validator``):
  answered 200 and never writes anything.
* ``POST`` ``application/x-www-form-urlencoded`` with PHP-style bracket keys
  (``data[merges][FNAME]=Ana``): ``subscribe``, ``unsubscribe``, ``profile``, ``upemail``,
  ``cleaned`` become one ``CUSTOMER`` event each; ``campaign`` (and any unknown type) is
  acknowledged without events.

Mailchimp sends no delivery id, so the delivery key (logged) is a hash of what identifies the fact:
type, ``fired_at``, list id, member id (or email) and, for email changes, the new email.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from ..domain.events import (
    CustomerEvent,
    CustomerProperties,
    EmailConsent,
    EventType,
    Identity,
    normalise_email,
    to_utc,
)
from .errors import MalformedPayloadError, MethodNotAllowedError, SignatureMismatchError
from .fields import aware_time
from .request import Handshake, Normalised, SecretLookup, WebhookRequest, reading

SOURCE = "mailchimp"
FORM = "application/x-www-form-urlencoded"
#: type -> the email consent state it sets (None: leaves consent alone)
MEMBER_TYPES: dict[str, str | None] = {
    "subscribe": "subscribed",
    "unsubscribe": "unsubscribed",
    "cleaned": "cleaned",
    "profile": None,
    "upemail": None,
}
FIRED_AT_FORMAT = "%Y-%m-%d %H:%M:%S"
#: Form fields accepted per delivery (a member event has a few dozen; bounds parsing work).
MAX_FIELDS = 2000
#: Bracket nesting accepted in a form key (``data[merges][GROUPINGS][0][groups]`` is 5).
MAX_KEY_DEPTH = 8
#: Merge fields kept as attributes per event, and the length each value is cut to.
MAX_ATTRIBUTES = 50
MAX_VALUE_CHARS = 256
#: Merge fields that are identity or names, never copied into attributes.
IDENTITY_MERGES = {"EMAIL", "FNAME", "LNAME", "PHONE", "ADDRESS", "GROUPINGS", "INTERESTS"}
#: Parts of an ADDRESS merge coarse enough for targeting; street and postcode are left out.
ADDRESS_PARTS = ("city", "state", "country")
_KEY = re.compile(r"([^\[\]]+)((?:\[[^\[\]]*\])*)")
_PART = re.compile(r"\[([^\[\]]*)\]")


def verify_token(secrets: list[bytes], token: str | None) -> None:
    """Raise :class:`SignatureMismatchError` unless ``token`` equals one of the configured secrets.

    Both sides are hashed first so the comparison is constant-time and length-independent;
    every secret is tried (two while rotating).
    """
    if not token:
        raise SignatureMismatchError("missing token query parameter")
    try:
        received = hashlib.sha256(token.encode("utf-8")).digest()
    except UnicodeEncodeError:
        raise SignatureMismatchError("token query parameter does not match") from None
    ok = False
    for secret in secrets:
        ok |= hmac.compare_digest(hashlib.sha256(secret).digest(), received)
    if not ok:
        raise SignatureMismatchError("token query parameter does not match")


def parse(request: WebhookRequest, secrets: SecretLookup, now: int) -> Normalised | Handshake:
    """Answer Mailchimp's GET validation, or check the token and normalise one POSTed event."""
    if request.method == "GET":
        return Handshake(200, "ok", "text/plain")
    if request.method != "POST":
        raise MethodNotAllowedError("Mailchimp audience webhooks are GET (validation) and POST")
    verify_token(secrets(SOURCE), (request.query or {}).get("token"))
    request.require_media_type("Mailchimp webhooks", FORM)
    try:
        form = parse_form(request.body)
    except (UnicodeDecodeError, ValueError):
        raise MalformedPayloadError("body is not a valid UTF-8 form (or has too many fields)") from None
    return normalise(form)


def parse_form(body: bytes) -> dict[str, Any]:
    """Decode a form body with PHP-style bracket keys into nested dicts (the last value wins)."""
    pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False,
                      encoding="utf-8", errors="strict", max_num_fields=MAX_FIELDS)
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.fullmatch(key)
        path = [match.group(1), *_PART.findall(match.group(2))] if match else [key]
        if len(path) > MAX_KEY_DEPTH:
            raise ValueError("form key nested too deeply")
        node = root
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
    return root


def normalise(form: dict[str, Any]) -> Normalised:
    """Turn one decoded Mailchimp delivery into a canonical event (or an acknowledged no-op)."""
    with reading():
        kind = _text(form.get("type"), "type")
        fired_raw = _text(form.get("fired_at"), "fired_at")
        if not kind:
            raise ValueError("missing field 'type'")
        if not fired_raw:
            raise ValueError("missing field 'fired_at'")
        fired_at = _fired_at(fired_raw)
        data = form.get("data", {})
        if not isinstance(data, dict):
            raise ValueError("data must be a set of data[...] fields")
        list_id = _id(data.get("list_id"), "data[list_id]")
        if kind == "upemail":
            member_id = _id(data.get("new_id"), "data[new_id]")
            email = _text(data.get("new_email"), "data[new_email]")
        else:
            member_id = _id(data.get("id"), "data[id]")
            email = _text(data.get("email"), "data[email]")
        new_email = _text(data.get("new_email"), "data[new_email]") if kind == "upemail" else ""
        member_key = member_id or (email or "").strip().lower()
        digest = hashlib.sha256(
            "|".join([kind, fired_raw, list_id or "", member_key, new_email.strip().lower()]).encode()
        ).hexdigest()
        delivery_key = f"{SOURCE}#{digest}"
        if kind not in MEMBER_TYPES:
            what = "campaign events are not used" if kind == "campaign" else f"event type {kind[:40]!r} is not used"
            return Normalised(delivery_key, [], ignored_reason=what)
        event = _member_event(kind, fired_at, list_id, member_id, email, data)
    if event is None:
        return Normalised(delivery_key, [], ignored_reason="no member email or id in the payload")
    return Normalised(delivery_key, [event])


# -- field helpers -------------------------------------------------------------------------


def _text(value: Any, field: str) -> str:
    """A form field's string value ('' when absent); a nested group where a value belongs is invalid."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a single value")
    return value


def _id(value: Any, field: str) -> str | None:
    text = _text(value, field).strip()
    if len(text) > 128:
        raise ValueError(f"{field} must be at most 128 characters")
    return text or None


def _fired_at(value: str) -> datetime:
    """``fired_at`` is ``YYYY-MM-DD HH:MM:SS`` in UTC (timezone UNCONFIRMED: treated as UTC).

    An ISO 8601 time is accepted too, in case the format changes; one with an offset is converted.
    """
    text = value.strip()
    try:
        parsed = datetime.strptime(text, FIRED_AT_FORMAT)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"fired_at is not 'YYYY-MM-DD HH:MM:SS': {text[:30]!r}") from None
    return to_utc(aware_time(parsed, "fired_at"))


def _clip(value: str) -> str:
    return value.strip()[:MAX_VALUE_CHARS]


def _merges(data: dict) -> dict:
    merges = data.get("merges", {})
    if not isinstance(merges, dict):
        raise ValueError("data[merges] must be a set of data[merges][...] fields")
    return merges


def _attributes(merges: dict) -> dict[str, str | list[str] | None]:
    """Descriptive merge fields for targeting: ``INTERESTS`` as a list, coarse ``ADDRESS`` parts, and
    every other single-valued merge under its lower-cased tag (an empty value clears it)."""
    attributes: dict[str, str | list[str] | None] = {}
    interests = merges.get("INTERESTS")
    if isinstance(interests, str):
        attributes["interests"] = [_clip(i) for i in interests.split(", ") if i.strip()][:MAX_ATTRIBUTES]
    address = merges.get("ADDRESS")
    if isinstance(address, dict):
        for part in ADDRESS_PARTS:
            value = address.get(part)
            if isinstance(value, str):
                attributes[part] = _clip(value) or None
    for tag, value in merges.items():
        if len(attributes) >= MAX_ATTRIBUTES:
            break
        if tag.upper() in IDENTITY_MERGES or not isinstance(value, str) or not 0 < len(tag) <= 64:
            continue  # identity, names, groupings and any nested merge are not copied
        attributes[tag.lower()] = _clip(value) or None
    return attributes


def _member_event(kind: str, fired_at: datetime, list_id: str | None, member_id: str | None, email: str,
                  data: dict) -> CustomerEvent | None:
    merges = _merges(data)
    phone = merges.get("PHONE")
    identity = Identity(
        email=email.strip() or None,
        phone=phone if isinstance(phone, str) and phone.strip() else None,
        customer_ids={SOURCE: member_id} if member_id else {},
    )
    if identity.is_empty():
        return None
    attributes = _attributes(merges)
    if kind == "upemail":
        old = normalise_email(_text(data.get("old_email"), "data[old_email]"))
        if old:
            attributes["previous_email"] = old
    first, last = merges.get("FNAME"), merges.get("LNAME")
    state = MEMBER_TYPES[kind]
    props = CustomerProperties(
        first_name=(_clip(first) or None) if isinstance(first, str) else None,
        last_name=(_clip(last) or None) if isinstance(last, str) else None,
        email_consent=EmailConsent(state=state, updated_at=fired_at) if state else None,
        attributes=attributes,
    )
    new_email = identity.email if kind == "upemail" else None
    return CustomerEvent(
        event_id=CustomerEvent.make_id(
            SOURCE, list_id, kind, member_id or identity.email, fired_at.isoformat(), new_email),
        source=SOURCE, type=EventType.CUSTOMER, occurred_at=fired_at, shop=list_id,
        identity=identity, properties=props,
    )
