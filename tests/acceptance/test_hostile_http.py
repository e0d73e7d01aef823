"""Hostile input over HTTP, against `segctl local start-api` (issue 10, defects 1, 2, 4 and 5).

Everything goes through the runner as a shop and a user would: signed webhooks in, the management
API out; processing is asynchronous (bus, queue), so reads wait until it has caught up.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from segctl.demo import http as request
from support import signed_shopify

pytestmark = pytest.mark.acceptance
NOW = datetime.now(UTC).replace(microsecond=0)
SHOP_A, SHOP_B = "hostile-a.myshopify.com", "hostile-b.myshopify.com"


def order(order_id: int, email: str, customer_id: int, total: str = "40.00", hours_ago: float = 2,
          phone: str | None = None, created_at: str | None = None) -> dict:
    at = created_at or (NOW - timedelta(hours=hours_ago)).isoformat()
    customer = {"id": customer_id, "email": email, **({"phone": phone} if phone else {})}
    return {"id": order_id, "email": email, "created_at": at, "updated_at": at, "total_price": total,
            "financial_status": "paid", "customer": customer,
            "line_items": [{"product_id": 1, "title": "Mug", "quantity": 1, "price": total}]}


def post(base_url: str, payload: dict, topic: str = "orders/create", shop: str = SHOP_A, event_id: str | None = None):
    body, headers = signed_shopify(payload, topic=topic, shop=shop,
                                   event_id=event_id or f"evt-{shop}-{topic}-{payload.get('id', 'x')}")
    return request("POST", f"{base_url}/webhooks/shopify", body, headers)


def profile(base_url: str, email: str):
    status, body = request("GET", f"{base_url}/profiles?email={email}")
    return body if status == 200 else None


def eventually(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"never: {what}")


def test_a_signed_order_re_sent_as_a_redact_is_refused_and_erases_nobody(base_url):
    body = order(501, "victim@example.com", 5501)
    assert post(base_url, body)[0] == 200
    eventually(lambda: profile(base_url, "victim@example.com"), "the order is applied")
    status, reason = post(base_url, body, topic="customers/redact", event_id="evt-forged-redact")
    assert status == 400 and "X-Shopify-Topic" in reason["reason"]
    assert post(base_url, body, topic="shop/redact", shop=SHOP_B, event_id="evt-forged-shop")[0] == 400
    # A marker order afterwards: once it is applied, anything the forged deliveries did would be too.
    assert post(base_url, order(502, "victim@example.com", 5501, hours_ago=1))[0] == 200
    after = eventually(lambda: (p := profile(base_url, "victim@example.com")) and p["traits"]["order_count"] == 2 and p,
                       "the marker order is applied")
    assert "recent-buyers" in after["segments"]


def test_a_phone_typed_by_two_customers_does_not_merge_them(base_url):
    shared = "+1 555 000 0000"
    assert post(base_url, order(601, "ana.phone@example.com", 6601, total="25.00", phone=shared))[0] == 200
    assert post(base_url, order(602, "ben.phone@example.com", 6602, total="900.00", phone=shared))[0] == 200
    ana = eventually(lambda: profile(base_url, "ana.phone@example.com"), "ana's order")
    ben = eventually(lambda: profile(base_url, "ben.phone@example.com"), "ben's order")
    assert ana["profile_id"] != ben["profile_id"]
    assert ana["traits"]["lifetime_value"] == "25.00" and "high-value" in ben["segments"]
    status, exported = request("GET", f"{base_url}/profiles/{ana['profile_id']}/export")
    assert status == 200 and [o["total"] for o in exported["orders"]] == ["25.00"]
    assert request("DELETE", f"{base_url}/profiles/{ben['profile_id']}")[0] in (200, 204)
    assert profile(base_url, "ben.phone@example.com") is None
    assert profile(base_url, "ana.phone@example.com")["traits"]["order_count"] == 1


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1999-12-31T23:59:59Z"])
def test_an_order_dated_outside_the_accepted_range_is_refused_naming_the_field(base_url, when):
    status, body = post(base_url, order(701, "time@example.com", 7701, created_at=when), event_id=f"evt-time-{when}")
    assert status == 400 and "created_at" in body["reason"]
    assert post(base_url, order(702, "time@example.com", 7701))[0] == 200
    found = eventually(lambda: profile(base_url, "time@example.com"), "the valid order")
    assert found["traits"]["order_count"] == 1
    assert request("GET", f"{base_url}/profiles/{found['profile_id']}/export")[0] == 200


def test_shop_redact_of_one_shop_keeps_what_the_other_shop_brought(base_url):
    assert post(base_url, order(801, "two.shops@example.com", 8801, total="300.00"), shop=SHOP_A)[0] == 200
    assert post(base_url, order(802, "two.shops@example.com", 8802, total="250.00"), shop=SHOP_B)[0] == 200
    assert post(base_url, order(803, "one.shop@example.com", 8803), shop=SHOP_A)[0] == 200
    before = eventually(lambda: (p := profile(base_url, "two.shops@example.com")) and p["traits"]["order_count"] == 2
                        and profile(base_url, "one.shop@example.com") and p, "three orders")
    assert "high-value" in before["segments"]
    assert post(base_url, {"shop_id": 9, "shop_domain": SHOP_A}, topic="shop/redact", shop=SHOP_A)[0] == 200
    eventually(lambda: profile(base_url, "one.shop@example.com") is None, "shop A's only customer erased")
    after = eventually(lambda: (p := profile(base_url, "two.shops@example.com")) and p["traits"]["order_count"] == 1
                       and p, "shop A's order removed")
    assert after["profile_id"] == before["profile_id"]
    assert after["traits"]["lifetime_value"] == "250.00" and "high-value" not in after["segments"]
