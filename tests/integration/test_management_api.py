"""Management API, issue 6: history, segment detail, previews and erasure, through the template's routes.

On the in-memory fakes (tests/fakes.py), except where the DynamoDB items themselves are checked (what a
preview or an erasure leaves in the tables, history expiry, paging over the history table) or webhooks go
over the template's bus: those run on moto."""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from datetime import UTC, datetime, timedelta

import boto3
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segmentation import bootstrap
from segmentation.domain.catalog import DEFAULT_CATALOG
from segmentation.domain.events import BrowseProperties, CustomerEvent, CustomerProperties, EventType, Identity
from segmentation.domain.profile import MembershipChange, Profile, iso
from segmentation.infra.profile_store import DynamoDBProfileStore, inflate_state
from segmentation.service.profiles import ProfileService
from support import deliver_to_profile_function, signed_shopify
from test_profile_function import NOW, order_event

DAY = 86400


def view(n: int, identity: Identity, category: str = "shoes", minutes_ago: int = 10) -> CustomerEvent:
    return CustomerEvent(event_id=f"view-{n}", source="test", type=EventType.PRODUCT_VIEWED,
                         occurred_at=NOW - timedelta(minutes=minutes_ago), identity=identity,
                         properties=BrowseProperties(category=category))


def pid_of(email: str) -> str:
    return bootstrap.repository().find(f"email#{email}").profile_id


def all_pages(api, url: str, key: str, cursor: str | None = None) -> list:
    out = []
    for _ in range(100):
        sep = "&" if "?" in url else "?"
        body = api("GET", url + (f"{sep}cursor={cursor}" if cursor else "")).json()
        out += body[key]
        cursor = body["cursor"]
        if cursor is None:
            return out
    raise AssertionError("pagination never ended")


def table_items(aws) -> dict[str, list[dict]]:
    ddb = boto3.client("dynamodb")
    out = {}
    for logical in aws.of_type("AWS::DynamoDB::Table"):  # the tables deployed (their Condition holds)
        out[logical] = ddb.scan(TableName=aws.physical_name(logical), ConsistentRead=True)["Items"]
    return out


# -- history ------------------------------------------------------------------------------------


def test_history_shows_each_entry_and_exit_with_its_time_and_cause(fake_api):
    service = bootstrap.profile_service()
    order = order_event(1, email="hist@example.com", hours_ago=1)
    service.apply(order)
    pid = pid_of("hist@example.com")
    entered_at = bootstrap.repository().get(pid).evaluated_at
    # 14 days after the purchase the sweep takes them out of recent-buyers.
    when = int((NOW - timedelta(hours=1) + timedelta(days=14)).timestamp()) + 60
    bootstrap.sweep().run(when)
    body = fake_api("GET", f"/profiles/{pid}/history").json()
    assert body["retention_days"] == 400
    changes = [(c["segment_id"], c["change"], c["cause"], c["at"]) for c in body["changes"]]
    assert ("recent-buyers", "entered", order.event_id, iso(entered_at)) in changes
    exit_ = next(c for c in changes if c[:2] == ("recent-buyers", "exited"))
    assert exit_[2] == "time" and exit_[3] <= iso(when)
    assert changes.index(exit_) < changes.index(("recent-buyers", "entered", order.event_id, iso(entered_at)))
    ats = [c["at"] for c in body["changes"]]
    assert ats == sorted(ats, reverse=True)  # newest first
    versions = [c["version"] for c in body["changes"]]
    assert all(v >= 1 for v in versions)


def test_history_pages_with_a_cursor_and_keeps_the_past_of_merged_profiles(fake_api):
    service = bootstrap.profile_service()
    for n in range(3):
        service.apply(view(n, Identity(anonymous_id="anon-h"), category=f"cat{n}", minutes_ago=30 - n))
    anon = bootstrap.repository().find("anon#anon-h").profile_id
    for n in range(3):
        service.apply(order_event(100 + n, email="merge-h@example.com", hours_ago=5 - n))
    service.apply(CustomerEvent(event_id="identify-h", source="test", type=EventType.CUSTOMER,
                                occurred_at=NOW - timedelta(minutes=1),
                                identity=Identity(email="merge-h@example.com", anonymous_id="anon-h"),
                                properties=CustomerProperties()))
    pid = pid_of("merge-h@example.com")
    assert pid != anon and bootstrap.repository().get(anon) is None
    whole = fake_api("GET", f"/profiles/{pid}/history?limit=1000").json()
    assert whole["cursor"] is None
    paged = all_pages(fake_api, f"/profiles/{pid}/history?limit=2", "changes")
    assert paged == whole["changes"]
    owners = {c["profile_id"] for c in paged}
    assert owners == {pid, anon}
    # The anonymous profile's entry into recent-browsers, and its exit when it was merged away.
    anon_changes = [(c["segment_id"], c["change"], c["cause"]) for c in paged if c["profile_id"] == anon]
    assert ("recent-browsers", "entered", "view-0") in anon_changes
    assert ("recent-browsers", "exited", "identify-h") in anon_changes
    keys = [(c["at"], c["version"], c["profile_id"], c["segment_id"]) for c in paged]
    assert len(set(keys)) == len(keys)


def test_history_older_than_the_retention_is_not_shown_and_expires_by_ttl(aws, api, monkeypatch):
    monkeypatch.setenv("HISTORY_RETENTION_DAYS", "5")
    bootstrap.reset()
    repo = bootstrap.repository()
    past = int((NOW - timedelta(days=10)).timestamp())
    old = ProfileService(repo, bootstrap.evaluator(), bootstrap.publisher(), clock=lambda: past)
    old.apply(order_event(7, email="ret@example.com", hours_ago=24 * 10 + 1))
    bootstrap.profile_service().apply(order_event(8, email="ret@example.com", hours_ago=1))
    pid = pid_of("ret@example.com")
    body = api("GET", f"/profiles/{pid}/history").json()
    assert body["retention_days"] == 5
    assert body["changes"] and all(c["at"] >= iso(past + 5 * DAY) for c in body["changes"])
    items = boto3.client("dynamodb").query(
        TableName=aws.physical_name("HistoryTable"), KeyConditionExpression="profile_id = :p",
        ExpressionAttributeValues={":p": {"S": pid}})["Items"]
    assert any(int(i["at"]["N"]) == past for i in items)  # still stored until DynamoDB's TTL removes it
    for i in items:
        assert int(i["expires"]["N"]) == int(i["at"]["N"]) + 5 * DAY


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "cursor=bm90LW91cnM"])
def test_history_bad_paging_is_400(fake_api, query):
    bootstrap.profile_service().apply(order_event(1, email="page@example.com"))
    resp = fake_api("GET", f"/profiles/{pid_of('page@example.com')}/history?{query}")
    assert resp.status == 400, resp.text
    assert resp.json()["message"]


def test_history_of_an_unknown_profile_is_404(fake_api):
    assert fake_api("GET", "/profiles/nope/history").status == 404


def test_export_includes_the_membership_history(fake_api):
    order = order_event(1, email="exp@example.com")
    bootstrap.profile_service().apply(order)
    body = fake_api("GET", f"/profiles/{pid_of('exp@example.com')}/export").json()
    assert ("recent-buyers", "entered", order.event_id) in {
        (c["segment_id"], c["change"], c["cause"]) for c in body["membership_history"]}
    assert body["emails"] == ["exp@example.com"]


# -- segment detail -----------------------------------------------------------------------------


def test_segment_shows_its_definition_size_last_change_and_members(fake_api):
    service = bootstrap.profile_service()
    for i in range(5):
        service.apply(order_event(i, email=f"s{i}@example.com"))
    body = fake_api("GET", "/segments/recent-buyers?limit=2").json()
    written = yaml.safe_load(DEFAULT_CATALOG.read_text())["segments"]["recent-buyers"]
    assert body["name"] == written["name"] == "Recent Buyers"
    assert body["definition"]["when"]["event"]["signal"] == [written["when"]["event"]["signal"]]
    assert body["definition"]["when"]["event"]["within"] == 14 * DAY
    assert body["size"] == 5
    latest = max(bootstrap.repository().find(f"email#s{i}@example.com").evaluated_at for i in range(5))
    assert body["last_change_at"] == iso(latest)
    first = body["members"]["profile_ids"]
    assert len(first) == 2 and body["members"]["cursor"]
    rest = all_pages(fake_api, "/segments/recent-buyers/members?limit=2", "profile_ids", body["members"]["cursor"])
    members = first + rest
    assert len(members) == len(set(members)) == body["size"]
    assert set(members) == {pid_of(f"s{i}@example.com") for i in range(5)}


def test_a_segment_without_members_has_no_last_change(fake_api):
    body = fake_api("GET", "/segments/repeat-buyers").json()
    assert (body["size"], body["last_change_at"], body["members"]["profile_ids"]) == (0, None, [])


def test_size_and_last_change_follow_an_exit(fake_api):
    service = bootstrap.profile_service()
    service.apply(order_event(1, email="a@example.com"))
    service.apply(order_event(2, email="b@example.com"))
    when = int((NOW - timedelta(hours=1) + timedelta(days=14)).timestamp()) + 60
    bootstrap.sweep().run(when)
    body = fake_api("GET", "/segments/recent-buyers").json()
    assert (body["size"], body["last_change_at"], body["members"]["profile_ids"]) == (0, iso(when), [])


def test_a_family_lists_its_instances_and_an_instance_is_a_segment(fake_api):
    service = bootstrap.profile_service()
    service.apply(view(1, Identity(email="f1@example.com"), category="shoes"))
    service.apply(view(2, Identity(email="f2@example.com"), category="shoes"))
    service.apply(view(3, Identity(email="f2@example.com"), category="hats"))
    family = fake_api("GET", "/segments/category-browsers").json()
    assert {i["id"]: i["size"] for i in family["instances"]} == {"category-browsers:shoes": 2,
                                                                  "category-browsers:hats": 1}
    assert family["size"] == 3 and family["members"] is None and family["family"] == "category-browsers"
    shoes = fake_api("GET", "/segments/category-browsers:shoes").json()
    assert shoes["name"] == "Browsing Category: shoes" and shoes["size"] == 2
    assert set(shoes["members"]["profile_ids"]) == {pid_of("f1@example.com"), pid_of("f2@example.com")}
    assert fake_api("GET", "/segments/category-browsers/members").status == 404


@pytest.mark.parametrize("path", ["/segments/no-such-segment", "/segments/recent-buyers:x",
                                  "/segments/no-such-segment/members", "/segments/category-browsers:never-seen",
                                  "/segments/category-browsers:never-seen/members"])
def test_unknown_segments_are_404(fake_api, path):
    resp = fake_api("GET", path)
    assert resp.status == 404 and "no segment" in resp.json()["message"]


# -- previews -----------------------------------------------------------------------------------


def three_buyers() -> dict[int, str]:
    """Three buyers: 30 minutes, 3 hours and 3 days ago; the last one spent 400."""
    service = bootstrap.profile_service()
    service.apply(order_event(1, email="p1@example.com", hours_ago=0.5))
    service.apply(order_event(2, email="p2@example.com", hours_ago=3))
    service.apply(order_event(3, email="p3@example.com", hours_ago=72, total="400.00"))
    return {n: pid_of(f"p{n}@example.com") for n in (1, 2, 3)}


@pytest.fixture
def buyers(fakes) -> dict[int, str]:
    return three_buyers()


def recent_buyers(within: str) -> dict:
    return {"name": "Recent Buyers", "description": "Purchased lately.",
            "when": {"event": {"signal": "order_placed", "within": within}}}


def test_preview_of_an_edit_says_exactly_who_would_leave(api):
    buyers = three_buyers()
    before = table_items(api.template)
    resp = api("POST", "/segments/preview", {"segment_id": "recent-buyers", "definition": recent_buyers("2h")})
    assert resp.status == 200, resp.text
    body = resp.json()
    assert body["exists"] is True and body["complete"] is True and body["cursor"] is None
    assert (body["current_size"], body["size"], body["entering"], body["leaving"]) == (3, 1, 0, 2)
    assert {m["profile_id"] for m in body["leave_sample"]} == {buyers[2], buyers[3]}
    assert [m["profile_id"] for m in body["sample"]] == [buyers[1]]
    assert body["scanned"] == 3
    assert table_items(api.template) == before  # a preview writes nothing
    assert bootstrap.repository().segment_size("recent-buyers") == 3


def test_preview_of_a_new_segment_shows_who_would_enter(fake_api, buyers):
    definition = {"name": "Big spenders", "description": "Spent over 300 in all.",
                  "when": {"aggregate": {"fn": "sum", "signal": "order_placed", "compare": "> 300"}}}
    body = fake_api("POST", "/segments/preview", {"segment_id": "big-spenders", "definition": definition}).json()
    assert body["exists"] is False
    assert (body["current_size"], body["size"], body["entering"], body["leaving"]) == (0, 1, 1, 0)
    assert body["enter_sample"] == [{"profile_id": buyers[3], "segment_id": "big-spenders"}]


def test_preview_read_in_small_pages_adds_up_to_the_same_figures(fake_api, buyers):
    request = {"segment_id": "recent-buyers", "definition": recent_buyers("2h")}
    whole = fake_api("POST", "/segments/preview", request).json()
    body, calls = {"cursor": None}, 0
    while True:
        body = fake_api("POST", "/segments/preview", {**request, "page_size": 1, "cursor": body["cursor"]}).json()
        calls += 1
        if body["complete"]:
            break
        assert body["cursor"] and body["scanned"] == calls
    assert calls >= 3
    for key in ("size", "current_size", "entering", "leaving", "scanned"):
        assert body[key] == whole[key], key
    assert {m["profile_id"] for m in body["leave_sample"]} == {m["profile_id"] for m in whole["leave_sample"]}
    # The cursor belongs to that definition: another one cannot continue it.
    first = fake_api("POST", "/segments/preview", {**request, "page_size": 1}).json()
    other = fake_api("POST", "/segments/preview", {"segment_id": "recent-buyers", "definition": recent_buyers("3h"),
                                              "cursor": first["cursor"]})
    assert other.status == 400 and "another preview" in other.json()["message"]


@pytest.mark.parametrize(("definition", "says"), [
    ({"name": "X", "description": "x", "when": {"event": {"signal": "order_teleported", "within": "2h"}}},
     "definition.when.event.signal"),
    ({"name": "X", "description": "x", "when": {"segment": "no-such-segment"}}, "unknown segment"),
    ({"name": "X", "description": "x", "when": {"segment": "loop"}}, "cycle"),
    ({"name": "X", "description": "x", "when": {"event": {"signal": "order_placed", "within": "soon"}}},
     "not a duration"),
    ({"name": "X", "when": {"event": {"signal": "order_placed"}}}, "description"),
])
def test_an_invalid_definition_is_400_with_the_reason(fake_api, buyers, definition, says):
    resp = fake_api("POST", "/segments/preview", {"segment_id": "loop", "definition": definition})
    assert resp.status == 400, resp.text
    assert says in resp.text


@pytest.mark.parametrize("body", [
    {"segment_id": "Not An Id", "definition": recent_buyers("1d")},
    {"segment_id": "ok", "definition": recent_buyers("1d"), "sample": 1000},
    {"segment_id": "ok", "definition": recent_buyers("1d"), "page_size": 0},
    {"segment_id": "ok", "definition": recent_buyers("1d"), "cursor": "garbage"},
    {"definition": recent_buyers("1d")},
])
def test_bad_preview_requests_are_400(fake_api, buyers, body):
    resp = fake_api("POST", "/segments/preview", body)
    assert resp.status == 400, resp.text


def test_preview_warns_when_the_definition_reads_further_back_than_profiles_keep(fake_api, buyers):
    definition = {"name": "Year browsers", "description": "Viewed a product this year.",
                  "when": {"event": {"signal": "product_viewed", "within": "365d"}}}
    body = fake_api("POST", "/segments/preview", {"segment_id": "year-browsers", "definition": definition}).json()
    assert any("product_viewed" in w and "365" in w for w in body["warnings"])
    assert fake_api("POST", "/segments/preview", {"segment_id": "recent-buyers",
                                             "definition": recent_buyers("2h")}).json()["warnings"] == []


# -- erasure ------------------------------------------------------------------------------------

EMAIL, PHONE, CUSTOMER, FIRST, ANON = "zoltana.q@example.com", "+15550199123", 7301234567, "Zoltana", "anon-zq-81"


def _post_shopify(api, payload: dict, topic: str, event_id: str):
    body, headers = signed_shopify(payload, topic=topic, event_id=event_id)
    resp = api("POST", "/webhooks/shopify", body, headers)
    assert resp.status == 200, resp.text
    deliver_to_profile_function(api.template)


def _the_person_everywhere(api) -> str:
    """Zoltana arrives through Shopify webhooks (so a cart owner exists), a merged
    anonymous profile, and enough events for history."""
    created = (NOW - timedelta(hours=2)).isoformat()
    customer = {"id": CUSTOMER, "email": EMAIL, "phone": PHONE, "first_name": FIRST, "last_name": "Quist",
                "accepts_marketing": True, "email_marketing_consent": {"state": "subscribed",
                                                                        "consent_updated_at": created},
                "created_at": created, "updated_at": created}
    _post_shopify(api, customer, "customers/create", "evt-z-1")
    _post_shopify(api, {"id": 555001, "token": "co-zq", "cart_token": "cart-zq", "email": EMAIL,
                        "created_at": created, "updated_at": created, "total_price": "20.00", "completed_at": None,
                        "customer": customer}, "checkouts/create", "evt-z-2")
    _post_shopify(api, {"id": 555002, "email": EMAIL, "created_at": created, "updated_at": created,
                        "total_price": "80.00", "customer": customer}, "orders/create", "evt-z-3")
    service = bootstrap.profile_service()
    service.apply(view(1, Identity(anonymous_id=ANON), minutes_ago=50))
    service.apply(CustomerEvent(event_id="identify-z", source="test", type=EventType.CUSTOMER,
                                occurred_at=NOW - timedelta(minutes=40),
                                identity=Identity(email=EMAIL, anonymous_id=ANON), properties=CustomerProperties()))
    return pid_of(EMAIL)


def _readable(item: dict) -> str:
    """An item as text, binary attributes unpacked (compressed profile state included)."""
    parts = []
    for value in item.values():
        if "B" in value:
            data = value["B"]
            try:
                data = inflate_state(data)
            except (zlib.error, ValueError):
                pass
            parts.append(data.decode("utf-8", "replace"))
        else:
            parts.append(json.dumps(value))
    return " ".join(parts)


@pytest.mark.parametrize("template_parameters", [{}, {"WebhookDuplicateAnswer": "on"}],
                         ids=["defaults", "duplicate-answer"])
def test_erasure_leaves_nothing_but_hashed_tombstones(aws, api, outbox, template_parameters):
    """With the duplicate answer on, the deliveries table keeps its hashes: none names the person."""
    pid = _the_person_everywhere(api)
    profile = bootstrap.repository().get(pid)
    merged = list(profile.merged_from)
    assert merged and profile.first_name == FIRST and profile.phone == PHONE
    identifiers = [EMAIL, PHONE.lstrip("+"), str(CUSTOMER), FIRST, "Quist", ANON, pid, *merged]
    before = table_items(aws)
    seen = {name for name in identifiers if any(name in _readable(i) for items in before.values() for i in items)}
    assert seen == set(identifiers)  # the scan below can see each of them
    assert before["CatalogTable"] and before["HistoryTable"]
    assert bool(before.get("DeliveriesTable")) == bool(template_parameters)
    outbox.drain()

    resp = api("DELETE", f"/profiles/{pid}")
    assert resp.status == 200 and resp.json()["erased"] is True
    after = table_items(aws)
    for table, items in after.items():
        for item in items:
            text = _readable(item)
            for name in identifiers:
                assert name not in text, (table, name, item)
    tombstones = {i["alias"]["S"] for i in after["AliasesTable"]}
    assert tombstones == {"erased#" + hashlib.sha256(a.encode()).hexdigest() for a in profile.aliases}
    exits = {m["detail"]["segment_id"] for m in outbox.drain() if m["detail-type"] == "SegmentExited"}
    assert exits == set(profile.segments) and resp.json()["memberships_ended"] == len(exits)
    sizes = {s["id"]: s["size"] for s in api("GET", "/segments").json()["segments"]}
    assert all(size == 0 for size in sizes.values())
    assert api("GET", f"/profiles/{pid}").status == 404
    assert api("DELETE", f"/profiles/{pid}").status == 404


def test_a_late_webhook_cannot_bring_an_erased_person_back(aws, api):
    pid = _the_person_everywhere(api)
    assert api("DELETE", f"/profiles/{pid}").status == 200
    # Shopify retries an order update from before the erasure, with marketing consent in it.
    created = (NOW - timedelta(hours=2)).isoformat()
    _post_shopify(api, {"id": 555002, "email": EMAIL, "created_at": created, "updated_at": created,
                        "total_price": "80.00", "customer": {"id": CUSTOMER, "email": EMAIL,
                                                             "accepts_marketing": True}},
                  "orders/updated", "evt-z-late")
    assert bootstrap.repository().find(f"email#{EMAIL}") is None
    assert bootstrap.repository().find(f"cust#shopify#demo-shop.myshopify.com#{CUSTOMER}") is None
    # Something the person does after the erasure is a new relationship: it starts from nothing.
    later = NOW + timedelta(minutes=5)
    _post_shopify(api, {"id": 555003, "email": EMAIL, "created_at": later.isoformat(),
                        "updated_at": later.isoformat(), "total_price": "10.00"}, "orders/create", "evt-z-new")
    fresh = bootstrap.repository().find(f"email#{EMAIL}")
    assert fresh is not None and fresh.profile_id != pid
    assert fresh.traits["order_count"] == 1 and fresh.email_consent is None and fresh.first_name is None


def test_an_erasure_request_for_someone_never_seen_still_blocks_their_late_webhooks(aws, api):
    _post_shopify(api, {"shop_id": 1, "shop_domain": "demo-shop.myshopify.com",
                        "customer": {"id": 4242, "email": "never@example.com"}, "orders_to_redact": []},
                  "customers/redact", "evt-redact-never")
    before = (NOW - timedelta(hours=1)).isoformat()
    _post_shopify(api, {"id": 9, "email": "never@example.com", "created_at": before, "updated_at": before,
                        "total_price": "5.00", "customer": {"id": 4242}}, "orders/create", "evt-never-order")
    assert bootstrap.repository().find("email#never@example.com") is None


def test_erasing_an_unknown_profile_is_404_and_changes_nothing(aws, api):
    three_buyers()
    before = table_items(aws)
    assert api("DELETE", "/profiles/unknown").status == 404
    assert table_items(aws) == before


def test_members_cursor_is_opaque(fake_api, buyers):
    page = fake_api("GET", "/segments/recent-buyers/members?limit=1").json()
    raw = base64.urlsafe_b64decode(page["cursor"] + "=" * (-len(page["cursor"]) % 4))
    assert json.loads(raw)[0] == "recent-buyers"  # ours to read, not to hand-make: a forged one is 400
    forged = base64.urlsafe_b64encode(json.dumps(["repeat-buyers", "x"]).encode()).decode().rstrip("=")
    assert fake_api("GET", f"/segments/recent-buyers/members?cursor={forged}").status == 400


def test_repository_without_history_table_still_saves(aws):
    """bench and older callers build the repository without the history table: writes still work."""
    ddb = boto3.client("dynamodb")
    repo = DynamoDBProfileStore(ddb, aws.physical_name("ProfilesTable"), aws.physical_name("AliasesTable"),
                                aws.physical_name("MembershipsTable"))
    service = ProfileService(repo, bootstrap.evaluator(), bootstrap.publisher(),
                             clock=lambda: int(datetime.now(UTC).timestamp()))
    service.apply(order_event(1, email="nohist@example.com"))
    assert "recent-buyers" in repo.find("email#nohist@example.com").segments
    assert ddb.scan(TableName=aws.physical_name("HistoryTable"))["Items"] == []


def test_an_unchanged_definition_moves_no_one_even_when_the_sweep_is_due(fake_api):
    """Both definitions are evaluated at one instant: the diff is the edit's, not time's."""
    past = int((NOW - timedelta(days=20)).timestamp())
    stale = ProfileService(bootstrap.repository(), bootstrap.evaluator(), bootstrap.publisher(), clock=lambda: past)
    stale.apply(order_event(1, email="stale@example.com", hours_ago=24 * 20))
    assert "recent-buyers" in bootstrap.repository().find("email#stale@example.com").segments  # not swept yet
    body = fake_api("POST", "/segments/preview",
                    {"segment_id": "recent-buyers", "definition": recent_buyers("14d")}).json()
    assert (body["current_size"], body["size"], body["entering"], body["leaving"]) == (0, 0, 0, 0)


def test_a_family_instance_reached_percent_encoded_is_found(fakes):
    """API Gateway may hand the path on still encoded (Swagger UI encodes the ':' of an instance)."""
    from segctl.runtime import context_for, load_handler
    from segctl.server import api_event

    bootstrap.profile_service().apply(view(1, Identity(email="enc@example.com"), category="shoes"))
    route = next(r for r in fakes.template.routes() if r.path == "/segments/{segment_id}" and r.method == "GET")
    path = "/segments/category-browsers%3Ashoes"
    event = api_event(route, {"segment_id": "category-browsers%3Ashoes"}, "GET", path, "", {}, b"")
    handler = load_handler(fakes.template.functions()["ApiFunction"])
    result = handler(event, context_for(fakes.template, "ApiFunction"))
    assert result["statusCode"] == 200, result
    assert json.loads(result["body"])["id"] == "category-browsers:shoes"


# -- history paging, property-based ----------------------------------------------------------------

_changes = st.lists(st.tuples(st.sampled_from(["p0", "p1", "p2"]), st.integers(0, 40),
                              st.sampled_from(["recent-buyers", "at-risk", "category-browsers:shoes"])),
                    max_size=30)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=_changes, limit=st.integers(1, 7))
def test_history_pages_add_up_to_the_whole_history_newest_first(aws, changes, limit):
    """Whatever the mix of a profile's own and its merged profiles' changes, paging with any limit
    returns each change once, newest first, and nothing else."""
    ddb = boto3.client("dynamodb")
    table = aws.physical_name("HistoryTable")
    for item in ddb.scan(TableName=table)["Items"]:
        ddb.delete_item(TableName=table, Key={"profile_id": item["profile_id"], "seq": item["seq"]})
    repo = bootstrap.repository()
    base = int(NOW.timestamp()) - 1000
    written = set()
    for version, (pid, at, segment) in enumerate(changes, start=1):
        change = MembershipChange(profile_id=pid, segment_id=segment, change="entered", at=base + at,
                                  cause=f"e{version}", version=version)
        ddb.put_item(TableName=table, Item=repo._history_put(change)["Put"]["Item"])
        written.add((pid, base + at, version, segment))
    profile = Profile(profile_id="p0", merged_from=["p1", "p2"])
    seen, cursor = [], None
    for _ in range(len(changes) + 2):
        page = repo.history_page(profile, int(NOW.timestamp()), limit, cursor)
        assert len(page.changes) <= limit
        seen += page.changes
        cursor = page.cursor
        if cursor is None:
            break
    keys = [(c["profile_id"], c["at"], c["version"], c["segment_id"]) for c in seen]
    assert len(keys) == len(set(keys)) and set(keys) == written
    order = [(c["at"], c["version"]) for c in seen]
    assert order == sorted(order, reverse=True)


@pytest.mark.parametrize("depth", [5000, 200, 17])
def test_a_definition_nested_too_deeply_is_400_not_a_crash(fake_api, buyers, depth):
    when = '{"not":' * depth + '{"event":{"signal":"order_placed"}}' + "}" * depth
    body = '{"segment_id":"deep","definition":{"name":"n","description":"d","when":' + when + "}}"
    resp = fake_api("POST", "/segments/preview", body.encode(), {"content-type": "application/json"})
    assert resp.status == 400, resp.text[:300]
    assert "deep" in resp.json()["message"]


def test_preview_of_a_family_lists_members_per_instance(fake_api):
    service = bootstrap.profile_service()
    service.apply(view(1, Identity(email="fam1@example.com"), category="shoes", minutes_ago=10))
    service.apply(view(2, Identity(email="fam2@example.com"), category="hats", minutes_ago=3 * 24 * 60))
    definition = {"name": "Browsing Category", "description": "Viewed this category today.",
                  "family": {"signal": ["product_viewed", "category_viewed"], "within": "1d"},
                  "when": {"event": {"signal": ["product_viewed", "category_viewed"],
                                     "where": {"category": "$value"}, "within": "1d"}}}
    body = fake_api("POST", "/segments/preview", {"segment_id": "category-browsers", "definition": definition}).json()
    assert (body["current_size"], body["size"], body["entering"], body["leaving"]) == (2, 1, 0, 1)
    assert body["sample"] == [{"profile_id": pid_of("fam1@example.com"), "segment_id": "category-browsers:shoes"}]
    assert body["leave_sample"] == [{"profile_id": pid_of("fam2@example.com"), "segment_id": "category-browsers:hats"}]
