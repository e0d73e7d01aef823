"""ESP member exports: a Klaviyo profiles CSV and a Mailchimp audience CSV (docs/import.md).

Each row becomes the consent fact the ESP holds about the address, at the time the export gives for
it, as the ESPs' webhooks would have delivered it (:mod:`segmentation.sources.klaviyo`,
:mod:`segmentation.sources.mailchimp`): source ``klaviyo`` / ``mailchimp``, ``shop`` the Klaviyo account
id / the Mailchimp audience (list) id, the ESP's member id as a customer id scoped to it. Consent
facts are applied by their own time (the latest wins), so an import never undoes a newer choice
the live path has seen, and a re-import is the same events (deterministic ids): nothing changes.

A row is rejected, naming the column, when a value cannot be read, or when the fact it states has
no usable time (a consent without its timestamp). A row naming no address and no member id is
skipped. Headers are matched case-insensitively, in any order; other columns are ignored.

Klaviyo (a list or segment exported from Audience > Lists & segments, or "all profiles"):

* ``Email``, ``Klaviyo ID``, ``Phone Number``, ``First Name``, ``Last Name``;
* ``Email Marketing Consent`` (``SUBSCRIBED``, ``UNSUBSCRIBED``, ``NEVER_SUBSCRIBED``) and
  ``Email Marketing Consent Timestamp`` (older exports: ``Email Consent`` / ``Email Consent Timestamp``);
  ``NEVER_SUBSCRIBED`` without a timestamp states no fact;
* ``Email Suppressions``: a suppression (``HARD_BOUNCE`` -> bounced, ``SPAM_COMPLAINT`` -> spam,
  ``UNSUBSCRIBE``/``USER_SUPPRESSED`` -> unsubscribed, ``INVALID_EMAIL`` -> invalid) with its time,
  as JSON (``[{"reason": ..., "timestamp": ...}]``, Klaviyo's API shape) or as text naming the reason
  and an ISO time. A suppression without a time is rejected (it cannot be placed among the consent
  facts, and importing the rest of the row could leave the address subscribed); a ``SUBSCRIBED``
  consent no earlier than a suppression the export still lists is not imported (Klaviyo would not
  mail that address);
* ``Last Open`` and ``Last Click``: an ``email_opened`` / ``email_clicked`` event on a message of its
  own, whose id is derived from the address and that time (``export:`` + 24 hex digits), so a
  re-import is the same message. It is the one engagement fact the export states: the person opened
  (clicked) an email then. What it does not say stays out: the message counts as delivered at that
  time, and the other messages they received are not known;
* the row's time when no fact has one: ``Profile Created On`` (else ``Date Added``), for the names.

Mailchimp (Audience > All contacts > Export Audience: a zip with one CSV per status, ``subscribed``,
``unsubscribed``, ``cleaned``): the status is the file's, given by the caller or read from the header
(``UNSUB_TIME`` only in the unsubscribed file, ``CLEAN_TIME`` only in the cleaned one), or per row
from a ``STATUS`` column. A file whose status cannot be told is refused as a whole: guessing
"subscribed" could subscribe people who left.

* ``Email Address``, ``First Name``, ``Last Name``, ``Phone Number``; ``EUID`` (the member's unique id,
  which the audience webhooks send as ``data[id]``);
* the fact's time: subscribed ``CONFIRM_TIME``, else ``OPTIN_TIME``; unsubscribed ``UNSUB_TIME``;
  cleaned ``CLEAN_TIME``; each else ``LAST_CHANGED``. Mailchimp writes them as
  ``YYYY-MM-DD HH:MM:SS`` without a zone: read as UTC, as the webhooks' ``fired_at``;
* ``MEMBER_RATING`` (1-5 stars of engagement) is not imported: it is a score with no time, not an
  event the catalog counts; the exports carry no open or click times.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime
from typing import Any

from ..domain.events import (
    CustomerEvent,
    CustomerProperties,
    EmailConsent,
    EmailProperties,
    EventType,
    Identity,
)
from ..sources.fields import optional_ident, receiving_at, text, utc_time
from ..sources.request import READ_ERRORS, malformed_reason
from .csv_files import _rows
from .records import Parsed, Rejected

KLAVIYO = "klaviyo"
MAILCHIMP = "mailchimp"

KLAVIYO_COLUMNS = ("email", "klaviyo id", "phone number", "first name", "last name", "email marketing consent",
                   "email marketing consent timestamp", "email consent", "email consent timestamp",
                   "email suppressions", "last open", "last click", "profile created on", "date added")
KLAVIYO_CONSENT = {"SUBSCRIBED": "subscribed", "UNSUBSCRIBED": "unsubscribed", "NEVER_SUBSCRIBED": "not_subscribed"}
SUPPRESSION_REASONS = {"HARD_BOUNCE": "bounced", "SPAM_COMPLAINT": "spam", "UNSUBSCRIBE": "unsubscribed",
                       "UNSUBSCRIBED": "unsubscribed", "USER_SUPPRESSED": "unsubscribed", "INVALID_EMAIL": "invalid"}

MAILCHIMP_COLUMNS = ("email address", "first name", "last name", "phone number", "euid", "leid", "optin_time",
                     "confirm_time", "last_changed", "unsub_time", "clean_time", "member_rating", "status")
#: status -> (consent state, the columns holding the fact's time in order of preference, webhook kind)
MAILCHIMP_STATUS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "subscribed": ("subscribed", ("confirm_time", "optin_time", "last_changed"), "subscribe"),
    "unsubscribed": ("unsubscribed", ("unsub_time", "last_changed"), "unsubscribe"),
    "cleaned": ("cleaned", ("clean_time", "last_changed"), "cleaned"),
    "pending": ("pending", ("optin_time", "last_changed"), "export-pending"),
    "transactional": ("not_subscribed", ("last_changed", "optin_time"), "export-transactional"),
}
MAILCHIMP_STATUSES = tuple(MAILCHIMP_STATUS)

_REASON = re.compile(r"[A-Z][A-Z_]{3,}")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?")


def _checked(now: datetime | None) -> AbstractContextManager[None]:
    """Read times against ``now`` (the import's instant) when given, else the wall clock."""
    return receiving_at(int(now.timestamp())) if now is not None else nullcontext()


def _time(row: dict[str, str], column: str, label: str) -> datetime | None:
    value = row.get(column)
    return utc_time(value, label) if value else None


def _email(row: dict[str, str], column: str, label: str) -> str | None:
    raw = text(row.get(column), label, 320)
    if raw and Identity(email=raw).email is None:
        raise ValueError(f"{label} is not an email address")
    return raw


def message_id(address: str, at: datetime) -> str:
    """The stand-in message of an engagement time an export gives (``Last Open`` ...): the same
    address and time are the same message, whichever file or run brings them."""
    return "export:" + hashlib.sha256(f"{address.lower()}|{at.isoformat()}".encode()).hexdigest()[:24]


# -- Klaviyo ---------------------------------------------------------------------------------------


def _suppressions(cell: str) -> list[tuple[str, datetime]]:
    """``Email Suppressions`` -> [(consent state, time)], oldest first; ValueError naming the column."""
    cell = cell.strip()
    if cell in ("", "[]", "{}", "-"):
        return []
    pairs: list[tuple[str, str | None]] = []
    try:
        data: Any = json.loads(cell)
    except ValueError:
        data = None
    if isinstance(data, dict):
        data = [data]
    if isinstance(data, list) and data and all(isinstance(d, dict) for d in data):
        for d in data:
            reason, stamp = d.get("reason"), d.get("timestamp") or d.get("datetime")
            pairs.append((str(reason or "").upper(), stamp if isinstance(stamp, str) else None))
    else:
        reasons = [r for r in _REASON.findall(cell.upper()) if r in SUPPRESSION_REASONS or "_" in r]
        stamps = _ISO.findall(cell)
        if not reasons:
            raise ValueError(f"Email Suppressions names no suppression reason ({', '.join(SUPPRESSION_REASONS)})")
        if len(stamps) == 1:
            stamps = stamps * len(reasons)  # one time for every reason named
        elif len(stamps) != len(reasons):
            stamps = []  # which time goes with which reason cannot be told
        pairs = [(r, stamps[i] if stamps else None) for i, r in enumerate(reasons)]
    out = []
    for reason, stamp in pairs:
        if reason not in SUPPRESSION_REASONS:
            raise ValueError(f"Email Suppressions: unknown reason {reason[:40]!r} ({', '.join(SUPPRESSION_REASONS)})")
        if not stamp:
            raise ValueError(f"Email Suppressions: {reason} without a time (the suppression's time is needed)")
        out.append((SUPPRESSION_REASONS[reason], utc_time(stamp, "Email Suppressions timestamp")))
    return sorted(out, key=lambda p: p[1])


def _klaviyo_row(row: dict[str, str], account: str | None) -> list[CustomerEvent] | str:
    """The events of one row, or why there are none; ValueError naming the column."""
    email = _email(row, "email", "Email")
    kid = optional_ident(row.get("klaviyo id"), "Klaviyo ID")
    identity = Identity(email=email, phone=text(row.get("phone number"), "Phone Number", 40),
                        customer_ids={KLAVIYO: kid} if kid else {})
    consent_col = "email marketing consent" if "email marketing consent" in row else "email consent"
    label = "Email Marketing Consent" if consent_col == "email marketing consent" else "Email Consent"
    raw_state = (row.get(consent_col) or "").strip().upper()
    state = None
    if raw_state:
        if raw_state not in KLAVIYO_CONSENT:
            raise ValueError(f"{label} must be one of {', '.join(KLAVIYO_CONSENT)}")
        state = KLAVIYO_CONSENT[raw_state]
    stamp = _time(row, f"{consent_col} timestamp", f"{label} Timestamp")
    if state in ("subscribed", "unsubscribed") and stamp is None:
        raise ValueError(f"{label} Timestamp is needed: the time of the {raw_state} consent")
    suppressions = _suppressions(row.get("email suppressions") or "")
    last_open = _time(row, "last open", "Last Open")
    last_click = _time(row, "last click", "Last Click")
    created = _time(row, "profile created on", "Profile Created On") or _time(row, "date added", "Date Added")
    if identity.is_empty():
        return "no email, phone or Klaviyo ID"
    if stamp is None:
        state = None  # NEVER_SUBSCRIBED without a time: no fact
    if state == "subscribed" and stamp is not None and any(at <= stamp for _, at in suppressions):
        state = None  # still suppressed at Klaviyo: the subscription is not the latest word
    at = stamp if state else (suppressions[-1][1] if suppressions else created or last_open or last_click)
    if at is None:
        raise ValueError("the row has no time: Email Marketing Consent Timestamp or Profile Created On is needed")
    who = kid or identity.email or identity.phone
    first, last = text(row.get("first name"), "First Name", 100), text(row.get("last name"), "Last Name", 100)
    events = [CustomerEvent(
        event_id=CustomerEvent.make_id(KLAVIYO, account, "export-profile", who, at.isoformat(), state or ""),
        source=KLAVIYO, type=EventType.CUSTOMER, occurred_at=at, shop=account, identity=identity,
        properties=CustomerProperties(first_name=first, last_name=last,
                                      email_consent=EmailConsent(state=state, updated_at=at) if state else None))]
    for consent, when in suppressions:
        events.append(CustomerEvent(
            event_id=CustomerEvent.make_id(KLAVIYO, account, "export-suppression", who, when.isoformat(), consent),
            source=KLAVIYO, type=EventType.CUSTOMER, occurred_at=when, shop=account, identity=identity,
            properties=CustomerProperties(email_consent=EmailConsent(state=consent, updated_at=when))))
    address = identity.email or kid
    for etype, when in ((EventType.EMAIL_OPENED, last_open), (EventType.EMAIL_CLICKED, last_click)):
        if when is None or address is None:
            continue
        message = message_id(address, when)
        events.append(CustomerEvent(
            event_id=CustomerEvent.make_id(KLAVIYO, account, "export-" + etype.value, message),
            source=KLAVIYO, type=etype, occurred_at=when, shop=account, identity=identity,
            properties=EmailProperties(message_id=message)))
    return events


def read_klaviyo_profiles_csv(lines: Iterable[str], account: str | None, now: datetime | None = None,
                              name: str = "klaviyo-profiles.csv") -> Iterator[Parsed | Rejected]:
    """A Klaviyo profiles export (see the module docstring) -> one record per row. ``account``: the
    Klaviyo account id (the webhooks' ``meta.klaviyo_account_id``), which scopes Klaviyo ids."""
    for item in _rows(lines, (), KLAVIYO_COLUMNS, name):
        if isinstance(item, Rejected):
            yield item
            continue
        line, row = item
        if "email" not in row and "klaviyo id" not in row:
            yield Rejected(line, "the header names neither Email nor Klaviyo ID", name)
            return
        try:
            with _checked(now):
                result = _klaviyo_row(row, account)
        except READ_ERRORS as exc:
            yield Rejected(line, malformed_reason(exc), name)
            continue
        yield Parsed(line, [], skipped=result) if isinstance(result, str) else Parsed(line, result)


# -- Mailchimp -------------------------------------------------------------------------------------


def _file_status(header: Iterable[str], status: str | None) -> str | None:
    """The file's status (None: per row, from STATUS); ValueError when it cannot be told or contradicts."""
    header = set(header)
    hinted = "unsubscribed" if "unsub_time" in header else "cleaned" if "clean_time" in header else None
    if status is not None:
        status = status.strip().lower()
        if status not in MAILCHIMP_STATUS:
            raise ValueError(f"the status must be one of {', '.join(MAILCHIMP_STATUSES)}")
        if hinted and hinted != status:
            column = "UNSUB_TIME" if hinted == "unsubscribed" else "CLEAN_TIME"
            raise ValueError(f"the file has {column}, so it is Mailchimp's {hinted} export, not {status}")
        return status
    if hinted:
        return hinted
    if "status" in header:
        return None
    raise ValueError("cannot tell the members' status from this file (Mailchimp exports subscribed, "
                     "unsubscribed and cleaned members as separate files): give the status "
                     f"({', '.join(MAILCHIMP_STATUSES)})")


def _mailchimp_row(row: dict[str, str], list_id: str, status: str | None) -> CustomerEvent | str:
    email = _email(row, "email address", "Email Address")
    euid = optional_ident(row.get("euid"), "EUID")
    if status is None:
        status = (row.get("status") or "").strip().lower()
        if status not in MAILCHIMP_STATUS:
            raise ValueError(f"STATUS must be one of {', '.join(MAILCHIMP_STATUSES)}")
    state, columns, kind = MAILCHIMP_STATUS[status]
    column = next((c for c in columns if row.get(c)), None)
    if column is None:
        raise ValueError(f"{columns[0].upper()} (or {', '.join(c.upper() for c in columns[1:])}) is needed: "
                         f"the time the member became {status}")
    at = utc_time(row[column], column.upper())
    identity = Identity(email=email, phone=text(row.get("phone number"), "Phone Number", 40),
                        customer_ids={MAILCHIMP: euid} if euid else {})
    if not identity.email and not euid:
        return "no email address or EUID"
    props = CustomerProperties(first_name=text(row.get("first name"), "First Name", 100),
                               last_name=text(row.get("last name"), "Last Name", 100),
                               email_consent=EmailConsent(state=state, updated_at=at))
    # the id the audience webhook gives the same fact (member id, or address, and its time)
    return CustomerEvent(
        event_id=CustomerEvent.make_id(MAILCHIMP, list_id, kind, euid or identity.email, at.isoformat(), None),
        source=MAILCHIMP, type=EventType.CUSTOMER, occurred_at=at, shop=list_id, identity=identity,
        properties=props)


def read_mailchimp_audience_csv(lines: Iterable[str], list_id: str, status: str | None = None,
                                now: datetime | None = None, name: str = "mailchimp-audience.csv"
                                ) -> Iterator[Parsed | Rejected]:
    """A Mailchimp audience export (see the module docstring) -> one record per row. ``list_id``: the
    audience id (the webhooks' ``data[list_id]``); ``status``: the file's (``subscribed``,
    ``unsubscribed``, ``cleaned``...), or None to read it from the header or a ``STATUS`` column."""
    if not list_id:
        raise ValueError("the Mailchimp audience (list) id is needed: it scopes the members' ids")
    file_status: str | None = None
    checked = False
    for item in _rows(lines, ("email address",), MAILCHIMP_COLUMNS, name):
        if isinstance(item, Rejected):
            yield item
            continue
        line, row = item
        if not checked:  # the header's status, once, at the first row (every row has every column)
            try:
                file_status = _file_status(row.keys(), status)
            except ValueError as exc:
                yield Rejected(1, str(exc), name)
                return
            checked = True
        try:
            with _checked(now):
                result = _mailchimp_row(row, list_id, file_status)
        except READ_ERRORS as exc:
            yield Rejected(line, malformed_reason(exc), name)
            continue
        yield Parsed(line, [], skipped=result) if isinstance(result, str) else Parsed(line, [result])
