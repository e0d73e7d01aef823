"""WooCommerce history: orders and customers as the REST API v3 lists them (docs/import.md).

The objects of ``GET /wp-json/wc/v3/orders`` and ``/customers`` are the objects WooCommerce's
webhooks carry, so each one is normalised by the webhook adapter's own code
(:func:`segmentation.sources.woocommerce.order_event` / ``customer_event``): the same events with
the same ids, so that an order the live path has seen (or will see) counts once.

One difference from the webhook, on purpose:

* a record that cannot be read is a :class:`Rejected` naming the order or customer and the field,
  never an exception: the rest goes on.

Pending, on-hold and draft orders are what the webhook makes of them: who the customer is (names,
country), not a purchase. An order or customer that names nobody is skipped.

Sources: :func:`read_objects` takes objects already decoded (the REST client's pages,
:mod:`segmentation.infra.woocommerce_rest`); :func:`read_file` reads a file of them, either JSON
arrays (REST pages saved as they came, one or several per file) or JSON Lines (one object a line).
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any, Literal

from ..domain.events import CustomerEvent
from ..sources import woocommerce
from ..sources.fields import receiving_at
from ..sources.request import READ_ERRORS, malformed_reason, shape_mismatch
from .records import Parsed, Rejected

Kind = Literal["orders", "customers"]
KINDS = ("orders", "customers")
_NOUN = {"orders": "order", "customers": "customer"}
_DECODER = json.JSONDecoder()
_SPACE = " \t\r\n"


def _label(kind: Kind, obj: dict) -> str:
    """``order 4312`` / ``customer 318``: which record a rejection is about, when its id is readable."""
    ident = obj.get("id")
    noun = _NOUN[kind]
    if isinstance(ident, int | str) and not isinstance(ident, bool) and 0 < len(str(ident)) <= 40:
        return f"{noun} {ident}: "
    return ""


def _other_site(obj: dict, shop: str) -> str | None:
    """Another site's host when the object names one (``_links``, ``payment_url``), as the webhook
    refuses a body naming another site than the one it came from."""
    links = obj.get("_links") if isinstance(obj.get("_links"), dict) else {}
    named = [obj.get("payment_url")] + [link.get("href") for rel in ("self", "collection")
                                        if isinstance(links.get(rel), list)
                                        for link in links[rel] if isinstance(link, dict)]
    for url in named:
        if isinstance(url, str) and url:
            host = woocommerce.site_host(url)
            if host != shop:
                return host or "another site"
    return None


def _one(obj: Any, shop: str, kind: Kind, now: datetime) -> tuple[CustomerEvent | None, str | None]:
    """The event of one object (None and why when there is none); raises what the readers raise."""
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object (a {type(obj).__name__})")
    noun = _NOUN[kind]
    why = shape_mismatch(obj, *woocommerce.SHAPES[noun])
    if why:
        raise ValueError(f"not a WooCommerce {noun} ({why}): is this a file of {KINDS[kind == 'orders']}?")
    other = _other_site(obj, shop)
    if other:
        raise ValueError(f"it belongs to {other}, not {shop} (its _links or payment_url): is the site right?")
    with receiving_at(int(now.timestamp())):
        if kind == "customers":
            event = woocommerce.customer_event(shop, obj)
            return event, None if event else "no customer email or id"
        event, reason = woocommerce.order_event(shop, obj)
    # no order alias: WooCommerce's webhooks give none (no live event would ever look one up)
    return event, reason


def read_objects(objects: Iterable[tuple[int, Any]], shop: str, now: datetime, kind: Kind,
                 name: str | None = None) -> Iterator[Parsed | Rejected]:
    """``(line, object)`` pairs -> one :class:`Parsed` or :class:`Rejected` per object.

    ``shop`` is the site's host (:func:`segmentation.sources.woocommerce.site_host`), as the webhook
    scopes its events; ``now`` is the import's instant (times more than a day after it are refused,
    as the webhook refuses them after its arrival); ``name`` names the source in rejections."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}")
    name = name or kind
    for line, obj in objects:
        try:
            event, reason = _one(obj, shop, kind, now)
        except READ_ERRORS as exc:
            yield Rejected(line, (_label(kind, obj) if isinstance(obj, dict) else "") + malformed_reason(exc), name)
            continue
        if event is None:
            yield Parsed(line, [], skipped=reason)
        else:
            yield Parsed(line, [event])


def _line_at(text: str, pos: int, starts: list[int]) -> int:
    """The 1-based line of character ``pos`` of ``text`` (``starts``: where each line begins)."""
    return bisect_right(starts, pos)


def _why(exc: Exception, starts: list[int] | None = None) -> str:
    """What is wrong with some JSON, and where on its line (``Expecting ',' delimiter at column 5``)."""
    if not isinstance(exc, json.JSONDecodeError):
        return "nested too deeply"
    column = exc.colno if starts is None else exc.pos - starts[_line_at(exc.doc, exc.pos, starts) - 1] + 1
    return f"{exc.msg}{'' if exc.msg.endswith(' at') else ' at'} column {column}"


def _arrays(text: str) -> Iterator[tuple[int, Any] | Rejected]:
    """The elements of one or more JSON arrays one after another (REST pages as saved), each with the
    line it starts on. A syntax error ends the file: its place is rejected, what came before stays."""
    starts = [0] + [i + 1 for i, c in enumerate(text) if c == "\n"]
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in _SPACE:
            pos += 1
        if pos >= n:
            return
        if text[pos] != "[":
            yield Rejected(_line_at(text, pos, starts), "not a JSON array: expected '[' (a REST page) here; "
                           "the rest of the file is not read")
            return
        pos += 1
        first = True
        while True:
            while pos < n and text[pos] in _SPACE:
                pos += 1
            if pos < n and text[pos] == "]":
                pos += 1
                break
            if not first:
                if pos >= n or text[pos] != ",":
                    yield Rejected(_line_at(text, min(pos, n - 1), starts),
                                   "not JSON: expected ',' or ']' between the objects; the rest of the file is not read")
                    return
                pos += 1
                while pos < n and text[pos] in _SPACE:
                    pos += 1
            try:
                value, end = _DECODER.raw_decode(text, pos)
            except (ValueError, RecursionError) as exc:
                where = exc.pos if isinstance(exc, json.JSONDecodeError) else pos
                yield Rejected(_line_at(text, min(where, max(n - 1, 0)), starts),
                               f"not JSON: {_why(exc, starts)}; the rest of the file is not read")
                return
            yield _line_at(text, pos, starts), value
            pos, first = end, False


def _json_lines(first: tuple[int, str] | None, rest: Iterator[tuple[int, str]]) -> Iterator[tuple[int, Any] | Rejected]:
    """One JSON value a line (blank lines skipped); a line that is an array gives each element."""
    for number, line in _chain(first, rest):
        if not line.strip():
            continue
        try:
            value = json.loads(line.strip())
        except (ValueError, RecursionError) as exc:
            yield Rejected(number, f"not JSON: {_why(exc)}")
            continue
        for item in value if isinstance(value, list) else [value]:
            yield number, item


def _chain(first: tuple[int, str] | None, rest: Iterator[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    if first is not None:
        yield first
    yield from rest


def file_kind(text: str) -> Kind | None:
    """``orders`` or ``customers``: the kind of a file of REST objects (JSON arrays or JSON Lines), by
    the keys only one of them has in its first object; None when it cannot be told."""
    start = text.lstrip("\ufeff \t\r\n")
    try:
        if start.startswith("["):
            start = start[1:].lstrip(_SPACE)
            first: Any = None if start.startswith("]") else _DECODER.raw_decode(start)[0]
        else:
            first = json.loads(start.split("\n", 1)[0])
    except (ValueError, RecursionError):
        return None
    if isinstance(first, list):
        first = first[0] if first else None
    if not isinstance(first, dict):
        return None
    fits = [kind for kind in KINDS if shape_mismatch(first, *woocommerce.SHAPES[_NOUN[kind]]) is None]
    return fits[0] if len(fits) == 1 else None


def read_file(lines: Iterable[str], shop: str, now: datetime, kind: Kind,
              name: str | None = None) -> Iterator[Parsed | Rejected]:
    """A file of REST v3 objects of one kind: JSON arrays (a file starting with ``[``: REST pages,
    one or several) or JSON Lines (one object a line). Records are numbered by the line they start
    on; a malformed line of JSON Lines is rejected and the next is read."""
    name = name or kind
    numbered = enumerate(lines, start=1)
    first = next(((i, line) for i, line in numbered if line.strip()), None)
    if first is None:
        return
    if first[1].lstrip().lstrip("\ufeff").startswith("["):
        # the blank lines before the first are gone from the text: count them back in
        rest = (line for _, line in _chain((first[0], first[1].lstrip("\ufeff")), numbered))
        text = "\n" * (first[0] - 1) + "".join(line if line.endswith("\n") else line + "\n" for line in rest)
        items = _arrays(text)
    else:
        items = _json_lines((first[0], first[1].lstrip("\ufeff")), numbered)
    for item in items:
        if isinstance(item, Rejected):
            yield Rejected(item.line, item.reason, name)
        else:
            yield from read_objects([item], shop, now, kind, name)
