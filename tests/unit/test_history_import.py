"""Importing history (issue 14) on the in-memory fakes: the live path's result from one write per
person, no flood of historic transitions, nothing counted twice, erased people stay erased, a bad
line stops nothing, and an interrupted import resumes."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fakes import InMemoryProfileStore, RecordingPublisher
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segmentation.domain.evaluation import default_evaluator
from segmentation.domain.events import CustomerEvent, EventType, Identity, LineItem, OrderProperties
from segmentation.history.csv_files import read_customers, read_orders
from segmentation.history.records import Parsed, Rejected, group_customers
from segmentation.service.history_import import HistoryImport, job_id
from segmentation.service.profiles import ProfileService
from test_oracle_property import DAY, raw_event

EVALUATOR = default_evaluator()
NOW = datetime.now(UTC).replace(microsecond=0)


class Counting(InMemoryProfileStore):
    """Counts profile writes per profile, and can fail after a number of them (a crash)."""

    def __init__(self, fail_after: int | None = None) -> None:
        super().__init__()
        self.saves: dict[str, int] = {}
        self.fail_after = fail_after

    def save(self, profile, *args, **kwargs):
        if self.fail_after is not None and sum(self.saves.values()) >= self.fail_after:
            raise RuntimeError("the function timed out")
        super().save(profile, *args, **kwargs)
        self.saves[profile.profile_id] = self.saves.get(profile.profile_id, 0) + 1


def service(store, now: int, publisher=None) -> ProfileService:
    return ProfileService(store, EVALUATOR, publisher or RecordingPublisher(), clock=lambda: now)


def csv_file(*rows: str) -> io.StringIO:
    return io.StringIO("\n".join(rows) + "\n")


def iso(days_ago: float) -> str:
    return (NOW - timedelta(days=days_ago)).isoformat()


ORDERS = csv_file(
    "order_id,email,customer_id,created_at,total,status,categories",
    f"1001,ana@example.com,,{iso(400)},120.00,placed,Shoes",
    f"1002,ana@example.com,,{iso(200)},80.00,placed,Shoes|Bags",
    f"1003,ana@example.com,,{iso(20)},95.50,placed,Bags",
    f"1004,,c-7,{iso(3)},40.00,placed,Shirts",
    f"1005,ben@example.com,,{iso(50)},not-money,placed,",
    "1006,ben@example.com,,yesterday,10.00,placed,",
    f"1007,,,{iso(5)},10.00,placed,",
    f"1008,ben@example.com,,{iso(45)},300.00,shipped,",
    f"1009,ben@example.com,,{iso(40)},310.00,cancelled,Shoes",
    f"1010,ben@example.com,,{iso(10)},15.00",
)
CUSTOMERS = csv_file(
    "email,customer_id,first_name,email_consent,consent_updated_at,created_at",
    f"ana@example.com,c-1,Ana,subscribed,{iso(500)},{iso(500)}",
    f"carl@example.com,c-7,Carl,unsubscribed,{iso(30)},{iso(90)}",
    f"not-an-address,c-9,Dee,subscribed,{iso(10)},{iso(10)}",
)


def run(store, records, now=None, quiet=False, publisher=None, job="import#t"):
    now = int((now or NOW).timestamp())
    return HistoryImport(service(store, now, publisher), store, checkpoint_every=1).run(records, job, quiet=quiet)


def records():
    ORDERS.seek(0)
    CUSTOMERS.seek(0)
    yield from read_customers(CUSTOMERS, "shopify", "s.myshopify.com", name="customers.csv")
    yield from read_orders(ORDERS, "shopify", "s.myshopify.com", now=NOW, name="orders.csv")


def test_csv_files_import_with_bad_lines_reported_by_line_and_field_and_the_rest_imported():
    store, publisher = Counting(), RecordingPublisher()
    report = run(store, records(), publisher=publisher)
    assert (report.records, report.imported, report.skipped, report.rejected) == (13, 8, 1, 4)
    assert report.reasons == [
        "customers.csv line 4: email is not an email address",
        "orders.csv line 6: total is not a decimal",
        "orders.csv line 7: created_at is not an ISO 8601 time: 'yesterday'",
        "orders.csv line 9: status must be one of placed, cancelled, refunded",
    ]
    ana = store.find("email#ana@example.com")
    assert ana.traits["order_count"] == 3 and ana.traits["lifetime_value"] == "295.50"
    assert "repeat-buyers" in ana.segments and "recent-buyers" not in ana.segments and ana.first_name == "Ana"
    carl = store.find("email#carl@example.com")  # the order names only c-7: the customers file joins them
    assert carl.profile_id == store.find("cust#shopify#s.myshopify.com#c-7").profile_id
    assert carl.traits["order_count"] == 1 and "suppressed" in carl.segments
    ben = store.find("email#ben@example.com")
    assert ben.traits["order_count"] == 1  # the cancelled order does not count; the bad lines are not there
    assert set(store.saves.values()) == {1}  # one write per person, however many orders
    assert report.customers == report.written == 3


def test_an_import_publishes_each_final_membership_once_with_cause_import_or_nothing_when_quiet():
    publisher = RecordingPublisher()
    run(Counting(), records(), publisher=publisher)
    entered = [m["detail"] for m in publisher.drain() if m["detail-type"] == "SegmentEntered"]
    assert entered and {d["cause"] for d in entered} == {"import"}
    assert len(entered) == len({(d["profile_id"], d["segment_id"]) for d in entered})  # once each
    # Ana bought 400, 200 and 20 days ago: she was a recent buyer twice before; only now counts.
    quiet = RecordingPublisher()
    store = Counting()
    report = run(store, records(), publisher=quiet, quiet=True)
    assert quiet.drain() == [] and report.changes > 0 and store.segment_size("recent-buyers") >= 1


def test_running_the_same_import_again_changes_nothing():
    store = Counting()
    first = run(store, records())
    before = {pid: (p.segments, p.traits, p.orders) for pid in store.profile_ids() if (p := store.get(pid))}
    again = run(store, records(), job="import#again")
    after = {pid: (p.segments, p.traits, p.orders) for pid in store.profile_ids() if (p := store.get(pid))}
    assert before == after and first.customers == again.customers and again.changes == 0


def order(n: int, email: str, days_ago: float, total: str = "50.00") -> CustomerEvent:
    at = NOW - timedelta(days=days_ago)
    return CustomerEvent(event_id=CustomerEvent.make_id("shopify", "s.myshopify.com", "order", str(n), at.isoformat(), "placed"),
                         source="shopify", type=EventType.ORDER, occurred_at=at, shop="s.myshopify.com",
                         identity=Identity(email=email), properties=OrderProperties(
                             order_id=str(n), total=Decimal(total), updated_at=at, items=[LineItem(category="Shoes")]))


def test_live_webhooks_and_an_import_of_the_same_orders_count_each_order_once_in_either_order():
    now = int(NOW.timestamp())
    history = [order(n, "eva@example.com", 100 - n * 10) for n in range(5)]
    live_first = Counting()
    for e in history[3:]:
        service(live_first, now).apply(e)
    run(live_first, [Parsed(i, [e]) for i, e in enumerate(history)])
    import_first = Counting()
    run(import_first, [Parsed(i, [e]) for i, e in enumerate(history)])
    for e in history[3:]:  # the shop's webhooks for orders the import already had
        service(import_first, now).apply(e)
    for store in (live_first, import_first):
        assert store.find("email#eva@example.com").traits["order_count"] == 5


def test_an_import_does_not_bring_back_an_erased_person():
    store, now = Counting(), int(NOW.timestamp())
    service(store, now).apply(order(1, "gone@example.com", 30))
    service(store, now).erase(["email#gone@example.com"], "erasure-1")
    report = run(store, [Parsed(1, [order(2, "gone@example.com", 20)]), Parsed(2, [order(3, "kept@example.com", 20)])])
    assert store.find("email#gone@example.com") is None and store.find("email#kept@example.com") is not None
    assert (report.written, report.erased) == (1, 1)


def test_an_interrupted_import_resumes_where_it_stopped_and_ends_with_everyone():
    people = [Parsed(i, [order(i, f"p{i}@example.com", 10 + i)]) for i in range(6)]
    store = Counting(fail_after=4)
    with pytest.raises(RuntimeError):
        run(store, people, job="import#resume")
    store.fail_after = None
    report = run(store, people, job="import#resume")
    assert report.resumed_from == 4 and report.written == 2
    assert all(store.find(f"email#p{i}@example.com") for i in range(6))
    assert sum(store.saves.values()) == 6  # nobody written twice


def test_records_sharing_an_identifier_are_one_person_and_weak_ones_join_nobody():
    a = order(1, "x@example.com", 5)
    b = order(2, "x@example.com", 4).model_copy(update={"identity": Identity(email="x@example.com", customer_ids={"shopify": "9"})})
    c = order(3, "y@example.com", 3).model_copy(update={"identity": Identity(customer_ids={"shopify": "9"})})
    d = order(4, "z@example.com", 2).model_copy(update={"identity": Identity(email="z@example.com", phone="+100")})
    e = order(5, "w@example.com", 1).model_copy(update={"identity": Identity(email="w@example.com", phone="+100")})
    groups = group_customers([a, b, c, d, e])
    assert sorted(len(g.events) for g in groups) == [1, 1, 3]


def test_a_csv_without_the_required_columns_is_refused_once_with_the_missing_names():
    rows = list(read_orders(csv_file("order_id,email", "1,a@example.com")))
    assert rows == [Rejected(1, "the header lacks the column(s) created_at, total", "orders")]
    assert [type(r) for r in read_orders(csv_file("just,some,thing", "1,2,3"))] == [Rejected]


def test_the_job_id_follows_the_inputs():
    assert job_id(["a", b"b"]) == job_id(["a", b"b"]) != job_id(["a", b"c"])


# -- import == the live path --------------------------------------------------------------------


@st.composite
def customer_history(draw):
    events = [draw(raw_event(n)) for n in range(draw(st.integers(1, 30)))]
    # as an import sees them: each fact once (ids as the platform makes them), in the file's order
    unique = list({e.event_id: e for e in events}.values())
    last = max(int(e.occurred_at.timestamp()) for e in unique)
    now = last + draw(st.sampled_from([0, 3600, 20 * DAY, 45 * DAY, 70 * DAY]))
    return draw(st.permutations(unique)), now


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(customer_history())
def test_an_import_builds_the_profile_the_live_path_builds_from_the_same_events(case):
    events, now = case
    live = Counting()
    for e in sorted(events, key=lambda e: (e.occurred_at, e.event_id)):  # delivered as they happened
        service(live, now).apply(e)
    imported = Counting()
    run(imported, [Parsed(i, [e]) for i, e in enumerate(events)], now=datetime.fromtimestamp(now, UTC))
    a, b = live.find("email#p@example.com"), imported.find("email#p@example.com")
    assert (a is None) == (b is None)
    if a is not None:
        assert set(a.segments) == set(b.segments)
        assert a.traits == b.traits
        assert a.next_due_at == b.next_due_at
        # (an import does not know which segments a message of the past was delivered to)
        assert all(m.s is None for m in b.messages.values())
        strip = {k: m.model_copy(update={"s": None}) for k, m in a.messages.items()}
        assert (a.orders, a.checkouts, strip, a.browse, a.email_consent) == \
               (b.orders, b.checkouts, b.messages, b.browse, b.email_consent)
        assert sum(imported.saves.values()) == 1


@pytest.mark.parametrize(("platform", "days_ago", "alias"), [
    ("shopify", 10, True), ("shopify", 200, False), ("woocommerce", 10, False), ("csv", 10, False)])
def test_only_recent_shopify_orders_get_an_order_alias_as_shopifys_webhooks_give(platform, days_ago, alias):
    """Shopify's refunds/create finds its order's customer by the order alias; the other platforms'
    webhooks give none, and an order past refunding needs none (each alias is a write)."""
    [record] = read_orders(csv_file("order_id,email,created_at,total", f"77,a@example.com,{iso(days_ago)},5.00"),
                           platform, "s.example.com", now=NOW)
    assert (record.events[0].identity.order_ref == "77") is alias
