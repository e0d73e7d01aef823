"""Issue 10: a profile that already holds an impossible time (stored before the webhooks refused them)
still reads, explains and exports; times a datetime cannot hold are shown at its limit. Through the API's
routes, on the in-memory fakes (tests/fakes.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from segmentation import bootstrap
from segmentation.domain.profile import (
    CheckoutRecord,
    Columns,
    ConsentRecord,
    MessageRecord,
    OrderRecord,
    Profile,
    iso,
)

YEAR_9999 = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())
YEAR_1 = int(datetime(1, 1, 1, tzinfo=UTC).timestamp())
DAY = 86400
ROUTES = ["/profiles/{pid}", "/profiles/{pid}/export", "/profiles/{pid}/explain", "/profiles/{pid}/history",
          "/profiles?email={email}"]


def stored(pid: str, email: str, at: int, due: int) -> Profile:
    """A profile as a year-9999 (or year-1) order left it: every time the profile keeps set from ``at``,
    and the next due instant (``at`` plus a window) beyond what a datetime can hold."""
    profile = Profile(
        profile_id=pid, email=email, emails=[email], aliases=[f"email#{email}"],
        orders={"shopify#shop#1": OrderRecord(at=at, total=Decimal("50"), status="placed", updated=at)},
        checkouts={"co": CheckoutRecord(started=at, updated=at)},
        messages={"m": MessageRecord(d=at, o=at, c=at)},
        browse={"product_viewed": Columns(t=[at], c=["shoes"], v=[10.0])},
        email_consent=ConsentRecord(state="subscribed", updated=at, since=at, log=[(at, "subscribed")]),
        first_at={"order_any": at}, last_at={"order_any": at, "activity": at}, first_seen_at=at,
        segments=["recent-buyers"], traits={"order_count": 1}, evaluated_at=at, next_due_at=due,
    )
    bootstrap.repository().save(profile, [f"email#{email}"], [])
    return profile


@pytest.mark.parametrize(("at", "due", "shown"), [
    pytest.param(YEAR_9999, YEAR_9999 + 14 * DAY, "9999-12-31T23:59:59Z", id="year-9999"),
    pytest.param(YEAR_1, YEAR_1 - 14 * DAY, "0001-01-01T00:00:00Z", id="year-1"),
])
def test_a_stored_profile_with_impossible_times_reads_and_exports(fake_api, at, due, shown):
    stored("far", "far@example.com", at, due)
    for route in ROUTES:
        resp = fake_api("GET", route.format(pid="far", email="far@example.com"))
        assert resp.status == 200, (route, resp.text)
    body = fake_api("GET", "/profiles/far").json()
    assert body["next_due_at"] == shown
    export = fake_api("GET", "/profiles/far/export").json()
    assert export["orders"][0]["placed_at"] == iso(at)
    assert export["first_seen_at"] == iso(at)
    assert export["consent_history"] == [{"at": iso(at), "state": "subscribed"}]


def test_a_year_9999_order_applied_before_the_fix_reads_and_exports(fake_api):
    """The state the defect left: the order went through the engine, which added its windows to it."""
    from segmentation.domain.events import CustomerEvent, EventType, Identity, OrderProperties

    far = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    bootstrap.profile_service().apply(CustomerEvent(
        event_id="old-9999", source="shopify", type=EventType.ORDER, occurred_at=far, shop="shop",
        identity=Identity(email="old@example.com"),
        properties=OrderProperties(order_id="1", total=Decimal("50"), updated_at=far)))
    profile = bootstrap.repository().find("email#old@example.com")
    assert profile.next_due_at > YEAR_9999  # beyond a datetime: the cause of the 500s
    for route in ROUTES:
        resp = fake_api("GET", route.format(pid=profile.profile_id, email="old@example.com"))
        assert resp.status == 200, (route, resp.text)
    assert fake_api("GET", f"/profiles/{profile.profile_id}").json()["next_due_at"] == "9999-12-31T23:59:59Z"
