"""What a history source yields, line by line, and how records are grouped per customer."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from ..domain.events import CustomerEvent, is_strong


@dataclass(frozen=True)
class Parsed:
    """Events read from one record (line ``line`` of its file; 0 when the source has no lines)."""

    line: int
    events: list[CustomerEvent]
    skipped: str | None = None  # why the record gave no event (e.g. no email, phone or customer id)


@dataclass(frozen=True)
class Rejected:
    """A record that could not be read; ``reason`` names the field."""

    line: int
    reason: str
    file: str = ""


@dataclass
class Customer:
    """The events of one person in the imported history (records sharing an identifier)."""

    events: list[CustomerEvent] = field(default_factory=list)
    key: str = ""  # the smallest of its identifiers: a stable order for the import and its checkpoint


def group_customers(events: Iterable[CustomerEvent]) -> list[Customer]:
    """Events grouped per person: two events sharing an identifier (an email, a platform customer
    id, an order) are the same person's, transitively (a customers file names the email and the
    customer id, an orders file only the customer id: one person). Weak identifiers (phone,
    anonymous id) do not join people, as in the live path. Sorted by key, so that a run and its
    resumption see the same order."""
    parent: dict[str, str] = {}

    def find(a: str) -> str:
        while parent.setdefault(a, a) != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    keyed: list[tuple[str, CustomerEvent]] = []
    for event in events:
        aliases = event.identity.alias_keys(event.shop, event.source)
        strong = [a for a in aliases if is_strong(a)] or aliases[:1]
        if not strong:
            continue
        for other in strong[1:]:
            ra, rb = find(strong[0]), find(other)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
        keyed.append((strong[0], event))
    groups: dict[str, Customer] = {}
    for alias, event in keyed:
        root = find(alias)
        groups.setdefault(root, Customer(key=root)).events.append(event)
    return [groups[k] for k in sorted(groups)]
