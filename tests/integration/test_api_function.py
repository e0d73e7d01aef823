"""ApiFunction through the template's routes (docs/api.md), on the in-memory fakes (tests/fakes.py);
the erasure test looks at the DynamoDB items, on moto."""

from __future__ import annotations

import boto3
import pytest
from segmentation import bootstrap
from test_profile_function import checkout_event, order_event


def five_buyers():
    """Five recent buyers (one also an abandoner), applied through the real profile service."""
    service = bootstrap.profile_service()
    for i in range(5):
        service.apply(order_event(i, email=f"c{i}@example.com"))
    service.apply(checkout_event("co-x", email="c0@example.com", hours_ago=0.5))
    service.apply(checkout_event("co-y", email="late@example.com", hours_ago=3))
    return service


@pytest.fixture
def shop(fakes):
    return five_buyers()


def test_health(fake_api):
    assert fake_api("GET", "/health").json() == {"status": "ok"}


def test_profile_by_email_shows_segments_traits_and_consent(fake_api, shop):
    resp = fake_api("GET", "/profiles?email=C1@Example.com")
    assert resp.status == 200
    body = resp.json()
    assert body["email"] == "c1@example.com"
    assert body["segments"] == ["recent-buyers"]
    for trait in ("order_count", "lifetime_value", "last_order_at", "last_activity_at",
                  "email_open_rate_30d", "preferred_category"):
        assert trait in body["traits"]
    assert body["traits"]["order_count"] == 1
    assert set(body) >= {"profile_id", "email", "segments", "traits", "consent"}
    by_id = fake_api("GET", f"/profiles/{body['profile_id']}")
    assert by_id.status == 200 and by_id.json() == body


def test_unknown_profile_is_404_and_missing_email_is_400(fake_api, shop):
    assert fake_api("GET", "/profiles?email=nobody@example.com").status == 404
    assert fake_api("GET", "/profiles/0000").status == 404
    assert fake_api("GET", "/profiles").status == 400


def test_segments_list_sizes(fake_api, shop):
    sizes = {s["id"]: s["size"] for s in fake_api("GET", "/segments").json()["segments"]}
    assert {k: sizes[k] for k in ("recent-buyers", "repeat-buyers", "high-value", "cart-abandoners")} == \
        {"recent-buyers": 5, "repeat-buyers": 0, "high-value": 0, "cart-abandoners": 1}
    assert set(sizes) >= {"new-subscribers", "at-risk", "inactive", "suppressed", "high-engagement"}
    for s in fake_api("GET", "/segments").json()["segments"]:
        assert s["name"] and s["description"]


def test_members_paginate_with_an_opaque_cursor(fake_api, shop):
    seen, cursor, pages = [], None, 0
    while True:
        url = "/segments/recent-buyers/members?limit=2" + (f"&cursor={cursor}" if cursor else "")
        body = fake_api("GET", url).json()
        seen += body["profile_ids"]
        pages += 1
        cursor = body["cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 5
    assert pages >= 3


@pytest.mark.parametrize("query", ["limit=0", "limit=5000", "limit=abc", "cursor=%%%", "cursor=WyJvdGhlciIsIngiXQ"])
def test_bad_paging_parameters_are_400(fake_api, shop, query):
    resp = fake_api("GET", f"/segments/recent-buyers/members?{query}")
    assert resp.status == 400, resp.text


def test_unknown_segment_members_is_404(fake_api, shop):
    assert fake_api("GET", "/segments/nope/members").status == 404


def test_erasure_removes_profile_aliases_and_memberships(api, aws):
    five_buyers()
    profile = api("GET", "/profiles?email=c0@example.com").json()
    pid = profile["profile_id"]
    assert api("DELETE", f"/profiles/{pid}").status == 200
    assert api("GET", f"/profiles/{pid}").status == 404
    assert api("GET", "/profiles?email=c0@example.com").status == 404
    ddb = boto3.client("dynamodb")
    for table in ("ProfilesTable", "AliasesTable", "MembershipsTable"):
        for item in ddb.scan(TableName=aws.physical_name(table))["Items"]:
            assert pid not in str(item) and "c0@example.com" not in str(item), (table, item)
    sizes = {s["id"]: s["size"] for s in api("GET", "/segments").json()["segments"]}
    assert sizes["recent-buyers"] == 4 and sizes["cart-abandoners"] == 1
    assert api("DELETE", f"/profiles/{pid}").status == 404


def test_export_holds_everything_stored_about_the_person(fake_api, shop):
    pid = fake_api("GET", "/profiles?email=c0@example.com").json()["profile_id"]
    export = fake_api("GET", f"/profiles/{pid}/export").json()
    assert export["profile_id"] == pid and export["emails"] == ["c0@example.com"]
    assert len(export["orders"]) == 1 and len(export["checkouts"]) == 1
    assert "email#c0@example.com" in export["identities"]
    assert fake_api("GET", "/profiles/nope/export").status == 404



def test_overlap_of_two_segments_sharing_members(fake_api):
    service = bootstrap.profile_service()
    for i in range(3):  # three buyers of 600: recent buyers and high value
        service.apply(order_event(i, email=f"v{i}@example.com", total="600.00"))
    service.apply(order_event(9, email="small@example.com", total="10.00"))  # only a recent buyer
    pairs = fake_api("GET", "/segments/overlap").json()["pairs"]
    pair = next(p for p in pairs if {p["a"], p["b"]} == {"recent-buyers", "high-value"})
    assert pair["overlap"] == 3 and pair["jaccard"] == 0.75


def test_openapi_document_lists_the_routes(fake_api):
    doc = fake_api("GET", "/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert {"/profiles", "/segments", "/segments/{segment_id}/members", "/profiles/{profile_id}/export"} <= set(doc["paths"])
