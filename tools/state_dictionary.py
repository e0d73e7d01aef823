"""Writes the preset dictionary the profile store compresses profile state with (run once per version).

zlib can start from a preset dictionary: strings a stream is likely to contain, which it then
copies instead of spelling out. Profile state is a JSON document of a few KB whose field names,
signal names, segment ids and trait names repeat from profile to profile but only once or twice
within one, so plain zlib pays for each of them in every write. The dictionary here is the state of
one made-up customer who did one or two of everything (an order, a refund, a checkout, each kind of
browsing, three email messages, a consent change), evaluated with the shipped catalog: structure
and names, no data of any real or benchmarked shop.

A dictionary is part of the stored format: state written with it can only be read with it. So each
one is kept forever under its own file name, and the store recognises it by the id zlib writes into
the stream (an Adler-32 of the dictionary). A new version gets a new file; never edit one.

    python tools/state_dictionary.py layers/segmentation/segmentation/infra/state_dictionary_v2.json

v1: the state as stored until the memory of applied events went compact and the id and the
per-segment due instants left the state; v2: as stored since.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from segmentation.domain.evaluation import default_evaluator
from segmentation.domain.events import (
    BrowseProperties,
    CheckoutProperties,
    CustomerEvent,
    CustomerProperties,
    EmailConsent,
    EmailProperties,
    EventType,
    Identity,
    LineItem,
    OrderProperties,
    RefundProperties,
)
from segmentation.domain.profile import Profile

START = datetime(2026, 1, 1, tzinfo=UTC)


def events() -> list[CustomerEvent]:
    who = Identity(email="someone@example.com")
    out: list[CustomerEvent] = []

    def add(type_: EventType, props, hours: float, source: str = "shopify") -> None:
        at = START + timedelta(hours=hours)
        out.append(CustomerEvent(event_id=CustomerEvent.make_id("dictionary", len(out)), source=source,
                                 type=type_, occurred_at=at, shop="shop.example.com", identity=who,
                                 properties=props))

    add(EventType.CUSTOMER, CustomerProperties(first_name="Alex", email_consent=EmailConsent(state="subscribed")), 0)
    for n, signal in enumerate((EventType.PAGE_VIEWED, EventType.PRODUCT_VIEWED, EventType.CATEGORY_VIEWED,
                                EventType.PRODUCT_ADDED, EventType.PAGE_ENGAGED, EventType.PAGE_SCROLLED)):
        for k in range(2):
            add(signal, BrowseProperties(category="Accessories" if k else "Shirts", price=Decimal("29.90"),
                                         url="/products/item"), 1 + n + k * 30, source="segment")
    for n in range(2):
        at = START + timedelta(days=2 + n)
        add(EventType.CHECKOUT, CheckoutProperties(checkout_id=f"c{n}", updated_at=at), 48 + 24 * n)
        add(EventType.ORDER, OrderProperties(order_id=f"o{n}", total=Decimal("59.90"), updated_at=at,
                                             items=[LineItem(category="Shirts"), LineItem(category="Accessories")]),
            48.5 + 24 * n)
    add(EventType.REFUND, RefundProperties(order_id="o1", refund_id="r1", amount=Decimal("10.00"),
                                           refunded_at=START + timedelta(days=4)), 96)
    for n in range(3):
        for kind, hours in ((EventType.EMAIL_DELIVERED, 0), (EventType.EMAIL_OPENED, 1), (EventType.EMAIL_CLICKED, 2)):
            add(kind, EmailProperties(message_id=f"m{n}"), 100 + 24 * n + hours, source="klaviyo")
    return out


def state() -> bytes:
    evaluator = default_evaluator()
    profile = Profile(profile_id="0" * 32)
    for event in events():
        at = int(event.occurred_at.timestamp())
        profile.apply(event, [f"email#{event.identity.email}"])
        result = evaluator.evaluate(profile, at)
        profile.record_evaluation(set(result.segments), result.traits, result.next_due_at, at, event.event_id,
                                            catalog_version=evaluator.version)
    return profile.model_dump_json(exclude={"version", "profile_id"}, exclude_none=True).encode()


if __name__ == "__main__":
    with open(sys.argv[1], "xb") as out:  # never overwrite a dictionary
        out.write(state())
