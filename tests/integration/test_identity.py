"""Identity stitching: one person, one profile, whichever identities their events carry. On the in-memory
fakes (tests/fakes.py) where only the service is at stake; on moto where webhooks go over the template's
bus, or where the DynamoDB items themselves are checked."""

from __future__ import annotations

from datetime import timedelta

import boto3
from segmentation import bootstrap
from segmentation.domain.events import (
    BrowseProperties,
    CustomerEvent,
    CustomerProperties,
    EventType,
    Identity,
)
from support import deliver_to_profile_function
from test_profile_function import NOW, order_event


def event(n: int, identity: Identity, type_=EventType.PRODUCT_VIEWED, props=None, minutes_ago=10):
    return CustomerEvent(event_id=f"id-{n}", source="test", type=type_, occurred_at=NOW - timedelta(minutes=minutes_ago),
                         identity=identity, properties=props or BrowseProperties(category="shirts"))


def find(alias: str):
    return bootstrap.repository().find(alias)


def test_an_identify_carrying_two_profiles_identities_merges_them(aws, outbox):
    service = bootstrap.profile_service()
    service.apply(event(1, Identity(anonymous_id="anon-1")))
    service.apply(event(2, Identity(anonymous_id="anon-1"), minutes_ago=5))
    service.apply(order_event(1, email="ana@example.com", hours_ago=1))
    browsing, buying = find("anon#anon-1"), find("email#ana@example.com")
    assert browsing.profile_id != buying.profile_id
    outbox.drain()
    # Segment identify: the anonymous visitor logs in as ana.
    identify = event(3, Identity(email="ana@example.com", anonymous_id="anon-1"), type_=EventType.CUSTOMER,
                     props=CustomerProperties(first_name="Ana"))
    service.apply(identify)
    merged = find("anon#anon-1")
    assert merged.profile_id == find("email#ana@example.com").profile_id == buying.profile_id
    assert merged.traits["order_count"] == 1  # the order, once
    assert len(merged.browse["product_viewed"].t) == 2  # both views, once each
    assert {"recent-browsers", "recent-buyers"} <= set(merged.segments)
    assert bootstrap.repository().get(browsing.profile_id) is None
    published = outbox.drain()
    merges = [m["detail"] for m in published if m["detail-type"] == "ProfilesMerged"]
    assert merges == [{"profile_id": buying.profile_id, "merged": [browsing.profile_id], "at": merges[0]["at"],
                       "cause": "id-3"}]
    exits = [m["detail"] for m in published if m["detail-type"] == "SegmentExited"]
    assert {(d["profile_id"], d["segment_id"]) for d in exits} == {(browsing.profile_id, s) for s in browsing.segments}
    assert "recent-browsers" in browsing.segments
    # Sizes and members agree with one person.
    repo = bootstrap.repository()
    assert repo.segment_size("recent-browsers") == 1
    assert repo.members("recent-browsers", 10, None).profile_ids == [merged.profile_id]
    ddb = boto3.client("dynamodb")
    for table in ("ProfilesTable", "AliasesTable", "MembershipsTable"):
        for item in ddb.scan(TableName=aws.physical_name(table))["Items"]:
            assert browsing.profile_id not in str(item), (table, item)


def test_a_platform_customer_record_with_a_new_email_moves_the_alias(fakes):
    service = bootstrap.profile_service()
    service.apply(order_event(1, email="ana@example.com"))  # customer id 42
    before = find("email#ana@example.com")
    update = event(5, Identity(email="ana.new@example.com", customer_ids={"shopify": "42"}),
                   type_=EventType.CUSTOMER, props=CustomerProperties())
    service.apply(CustomerEvent(**{**update.model_dump(), "shop": "shop.myshopify.com"}))
    after = find("email#ana.new@example.com")
    assert after is not None and after.profile_id == before.profile_id
    assert after.email == "ana.new@example.com" and after.traits["order_count"] == 1
    assert find("email#ana@example.com") is None


def test_an_explicit_email_change_moves_the_alias(fakes):
    service = bootstrap.profile_service()
    service.apply(order_event(1, email="old@example.com"))
    before = find("email#old@example.com")
    upemail = event(6, Identity(email="new@example.com"), type_=EventType.CUSTOMER,
                    props=CustomerProperties(attributes={"previous_email": "old@example.com"}))
    service.apply(upemail)
    after = find("email#new@example.com")
    assert after.profile_id == before.profile_id
    assert find("email#old@example.com") is None
    assert "previous_email" not in after.attributes


def test_shopify_customers_redact_erases_the_person(aws, api, outbox):
    from support import signed_shopify

    bootstrap.profile_service().apply(order_event(1, email="gone@example.com"))
    pid = find("email#gone@example.com").profile_id
    outbox.drain()
    body, headers = signed_shopify({"shop_id": 1, "shop_domain": "shop.myshopify.com",
                                    "customer": {"id": 999, "email": "gone@example.com"}, "orders_to_redact": [1]},
                                   topic="customers/redact", event_id="evt-redact", shop="shop.myshopify.com")
    assert api("POST", "/webhooks/shopify", body, headers).status == 200
    # The bus delivered it to the profile queue; hand it to ProfileFunction as the event source mapping would.
    deliver_to_profile_function(aws)
    assert find("email#gone@example.com") is None and bootstrap.repository().get(pid) is None
    exits = {m["detail"]["segment_id"] for m in outbox.drain() if m["detail-type"] == "SegmentExited"}
    assert "recent-buyers" in exits


def test_shopify_data_request_publishes_everything_stored_about_the_person(aws, api, outbox):
    from support import signed_shopify

    bootstrap.profile_service().apply(order_event(1, email="asks@example.com", total="42.00"))
    outbox.drain()
    body, headers = signed_shopify({"shop_id": 1, "shop_domain": "shop.myshopify.com", "orders_requested": [1],
                                    "customer": {"id": 5, "email": "asks@example.com"}, "data_request": {"id": 9999}},
                                   topic="customers/data_request", event_id="evt-dr", shop="shop.myshopify.com")
    assert api("POST", "/webhooks/shopify", body, headers).status == 200
    deliver_to_profile_function(aws)
    [export] = [m["detail"] for m in outbox.drain() if m["detail-type"] == "ProfileDataExported"]
    assert export["export"]["email"] == "asks@example.com"
    assert [o["total"] for o in export["export"]["orders"]] == ["42.00"]
    assert ("recent-buyers", "entered") in {(c["segment_id"], c["change"]) for c in export["export"]["membership_history"]}
    assert find("email#asks@example.com") is not None  # a data request changes nothing


def test_shopify_shop_redact_erases_that_shops_customers_only(aws, api):
    from support import signed_shopify

    service = bootstrap.profile_service()
    for i in range(3):
        service.apply(order_event(10 + i, email=f"shopper{i}@example.com"))  # shop.myshopify.com customers
    other = event(50, Identity(email="elsewhere@example.com", customer_ids={"shopify": "77"}),
                  type_=EventType.CUSTOMER, props=CustomerProperties())
    service.apply(CustomerEvent(**{**other.model_dump(), "shop": "other-shop.myshopify.com"}))
    body, headers = signed_shopify({"shop_id": 1, "shop_domain": "shop.myshopify.com"}, topic="shop/redact",
                                   event_id="evt-sr")
    headers["X-Shopify-Shop-Domain"] = "shop.myshopify.com"
    assert api("POST", "/webhooks/shopify", body, headers).status == 200
    deliver_to_profile_function(aws)
    assert all(find(f"email#shopper{i}@example.com") is None for i in range(3))
    assert find("email#elsewhere@example.com") is not None


def test_shopify_refund_lowers_revenue_once_and_a_full_refund_stops_the_order_counting(aws, api):
    from support import signed_shopify

    service = bootstrap.profile_service()
    service.apply(order_event(71, email="refund@example.com", total="600.00"))
    assert "high-value" in find("email#refund@example.com").segments
    refund = {"id": 9001, "order_id": 71, "created_at": NOW.isoformat(),
              "transactions": [{"amount": "150.00", "kind": "refund", "status": "success"}]}
    def post(payload, event_id):
        body, headers = signed_shopify(payload, topic="refunds/create", event_id=event_id)
        headers["X-Shopify-Shop-Domain"] = "shop.myshopify.com"
        return api("POST", "/webhooks/shopify", body, headers).status

    for attempt in range(2):  # delivered twice (a retry with another event id): applied once
        assert post(refund, f"evt-r-{attempt}") == 200
    deliver_to_profile_function(aws)
    profile = find("email#refund@example.com")
    assert profile.traits["lifetime_value"] == "450.00" and "high-value" not in profile.segments
    rest = {**refund, "id": 9002, "transactions": [{"amount": "450.00", "kind": "refund", "status": "success"}]}
    assert post(rest, "evt-r-2") == 200
    deliver_to_profile_function(aws)
    profile = find("email#refund@example.com")
    assert profile.traits["order_count"] == 0 and "recent-buyers" not in profile.segments
    # A refund for an order nobody saw creates no profile.
    stray = {**refund, "id": 9003, "order_id": 424242}
    assert post(stray, "evt-r-3") == 200
    deliver_to_profile_function(aws)
    assert bootstrap.repository().find("order#shopify#shop.myshopify.com#424242") is None


def test_a_merge_where_both_profiles_share_a_size_counter_shard(aws):
    """Regression: the absorbed profile's exit and the survivor's entry touched one counter item twice
    in one transaction (DynamoDB refuses that), when both ids fell in the same shard."""
    import time
    import zlib

    from segmentation.domain.evaluation import default_evaluator
    from segmentation.service.profiles import ProfileService

    same_shard = [f"p{i:04d}" for i in range(200) if zlib.crc32(f"p{i:04d}".encode()) % 8 == 0][:2]
    ids = iter(same_shard)
    service = ProfileService(bootstrap.repository(), default_evaluator(), bootstrap.publisher(),
                             clock=lambda: int(time.time()), new_id=lambda: next(ids))
    service.apply(event(1, Identity(anonymous_id="anon-s")))  # recent-browsers
    service.apply(order_event(1, email="shard@example.com"))  # a buyer, not (yet) a browser
    assert {find("anon#anon-s").profile_id, find("email#shard@example.com").profile_id} == set(same_shard)
    service.apply(event(3, Identity(email="shard@example.com", anonymous_id="anon-s"), type_=EventType.CUSTOMER,
                        props=CustomerProperties()))
    assert find("anon#anon-s").profile_id == find("email#shard@example.com").profile_id
    assert bootstrap.repository().segment_size("recent-browsers") == 1


def test_an_email_change_that_also_merges_two_profiles(fakes):
    service = bootstrap.profile_service()
    service.apply(order_event(1, email="old@example.com"))
    service.apply(event(60, Identity(anonymous_id="anon-m")))
    # Mailchimp-style change of address, from a visitor whose anonymous id is another profile.
    change = event(61, Identity(email="new@example.com", anonymous_id="anon-m"), type_=EventType.CUSTOMER,
                   props=CustomerProperties(attributes={"previous_email": "old@example.com"}))
    service.apply(change)
    merged = find("email#new@example.com")
    assert merged is not None and find("anon#anon-m").profile_id == merged.profile_id
    assert find("email#old@example.com") is None and merged.traits["order_count"] == 1


def test_an_export_too_large_for_one_bus_event_points_to_the_api_instead(aws, outbox):
    from segmentation.infra.publisher import MAX_DETAIL_BYTES

    publisher = bootstrap.publisher()
    publisher.publish_export("p-small", "req-1", {"orders": ["x" * 100]})
    publisher.publish_export("p-big", "req-2", {"orders": ["x" * 1000] * (MAX_DETAIL_BYTES // 1000 + 1)})
    small, big = sorted((m["detail"] for m in outbox.drain()), key=lambda d: d["profile_id"])[::-1]
    assert small["export"] == {"orders": ["x" * 100]}
    assert big["export"] is None and big["too_large"] is True and big["export_path"] == "/profiles/p-big/export"
