"""The ESP sync's use case (issue 12) on in-memory ports: memberships and traits reach each
destination as desired state; consent is sacred; outages, replays and any order lose nothing.

The HTTP clients are tested against the fake Klaviyo and Mailchimp in tests/esp; the whole path
(bus -> queue -> EspSyncFunction -> fake ESP over HTTP) in tests/integration/test_esp_sync_function.py.
"""

from __future__ import annotations

import itertools
import uuid

import pytest
from fakes import InMemoryEsp, InMemoryProfileStore, InMemorySyncStateStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segmentation.destinations.config import load_destinations
from segmentation.destinations.desired import desired_state
from segmentation.domain.catalog import load_catalog
from segmentation.domain.profile import MembershipChange, Profile
from segmentation.service.esp_reconcile import Reconcile
from segmentation.service.esp_sync import EspSync, Notice, parse_messages, webhook_messages
from segmentation.service.ports import DestinationUnavailableError

CATALOG = load_catalog(None)
DESTINATIONS = load_destinations("""\
version: 1
destinations:
  - id: klaviyo-main
    type: klaviyo
    segments:
      recent-buyers: {list: "L-RB"}
      at-risk: {list: "L-AR"}
    properties:
      PreferredCategory: preferred_category
      OrderCount: order_count
      Segments: segments
  - id: mailchimp-main
    type: mailchimp
    list: "aud1"
    segments:
      recent-buyers: {tag: "Recent Buyers"}
      high-value: {tag: "VIP"}
    merge_fields:
      PREFCAT: preferred_category
  - id: hooks
    type: webhook
    url: "https://example.com/segments"
""", CATALOG)
NOW = 1_780_000_000


class Hooks:
    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.down = False

    def send(self, messages):
        if self.down:
            raise DestinationUnavailableError("hooks: down")
        self.sent.extend(messages)
        return len(messages)


class World:
    def __init__(self) -> None:
        self.store = InMemoryProfileStore(due_shards=4)
        self.states = InMemorySyncStateStore()
        self.klaviyo = InMemoryEsp("klaviyo")
        self.mailchimp = InMemoryEsp("mailchimp")
        self.hooks = Hooks()
        self.clock = itertools.count(NOW)
        self.sync = EspSync(DESTINATIONS, self.store, self.states, self.client, CATALOG)

    def client(self, d):
        return {"klaviyo-main": self.klaviyo, "mailchimp-main": self.mailchimp, "hooks": self.hooks}[d.id]

    def put(self, pid: str, email: str | None, segments: set[str], traits: dict | None = None,
            aliases: tuple[str, ...] = ()) -> list[Notice]:
        """Store the profile's new evaluation; the notices the bus would carry."""
        profile = self.store.get(pid)
        new_aliases = []
        if profile is None:
            profile = Profile(profile_id=pid)
        if email and f"email#{email}" not in profile.aliases:
            new_aliases.append(f"email#{email}")
        new_aliases += [a for a in aliases if a not in profile.aliases]
        before = profile.email
        profile.email = email
        profile.aliases = [*profile.aliases, *new_aliases]
        changes = profile.record_evaluation(set(segments), dict(traits or {}), None, next(self.clock), "e",
                                            watch=DESTINATIONS.watched(), email_before=before)
        self.store.save(profile, new_aliases, changes)
        return notices(changes)

    def erase(self, pid: str) -> list[Notice]:
        profile = self.store.get(pid)
        at = next(self.clock)
        exits = [MembershipChange(profile_id=pid, segment_id=s, change="exited", at=at, cause="erase",
                                  version=profile.version + 1) for s in profile.segments]
        self.store.erase(profile, at)
        return notices(exits)

    def desired(self, destination_id: str) -> dict[str, set[str]]:
        """email -> targets, from the stored profiles: what the destination must hold."""
        d = DESTINATIONS.get(destination_id)
        out: dict[str, set[str]] = {}
        for pid in self.store.profile_ids():
            state = desired_state(self.store.get(pid), d, catalog=CATALOG)
            if state.email and state.targets:
                out[state.email] = set(state.targets)
        return out


def notices(changes) -> list[Notice]:
    return [Notice(message_id=uuid.uuid4().hex, kind=c.change, profile_id=c.profile_id, version=c.version,
                   at=c.at, cause=c.cause, segment_id=c.segment_id or None, fields=c.fields) for c in changes]


@pytest.fixture
def world() -> World:
    return World()


# -- scenarios -------------------------------------------------------------------------------------


def test_entering_puts_the_address_in_the_list_and_tag_with_its_properties(world):
    outcome = world.sync.sync(world.put("p1", "ana@example.com", {"recent-buyers"},
                                        {"preferred_category": "shoes", "order_count": 1}))
    assert outcome.failed_messages == set()
    assert world.klaviyo.holdings() == {"ana@example.com": {"L-RB"}}
    assert world.klaviyo.properties["ana@example.com"] == {
        "PreferredCategory": "shoes", "OrderCount": 1, "Segments": ["recent-buyers"]}
    assert world.mailchimp.holdings() == {"ana@example.com": {"Recent Buyers"}}
    assert world.mailchimp.properties["ana@example.com"] == {"PREFCAT": "shoes"}
    assert [m["type"] for m in world.hooks.sent] == ["segment.entered"]
    assert world.hooks.sent[0]["data"]["email"] == "ana@example.com"


def test_exiting_takes_the_address_out(world):
    world.sync.sync(world.put("p1", "ana@example.com", {"recent-buyers"}))
    world.sync.sync(world.put("p1", "ana@example.com", {"at-risk"}))
    assert world.klaviyo.holdings() == {"ana@example.com": {"L-AR"}}
    assert world.mailchimp.holdings() == {}


def test_enter_then_exit_in_one_window_sends_only_the_final_state(world):
    batch = world.put("p1", "ana@example.com", {"recent-buyers"}) + world.put("p1", "ana@example.com", set())
    world.sync.sync(batch)
    assert world.klaviyo.holdings() == {} and world.mailchimp.holdings() == {}
    # nothing to add or remove was ever sent: the final state is "in nothing", as the ESP already is
    assert all(not p.add and not p.remove for batch in world.klaviyo.pushes for p in batch)


def test_a_replay_of_the_same_changes_sends_nothing(world):
    batch = world.put("p1", "ana@example.com", {"recent-buyers"}, {"preferred_category": "shoes"})
    world.sync.sync(batch)
    sent = len(world.klaviyo.pushes), len(world.mailchimp.pushes)
    world.sync.sync(batch)
    world.sync.sync(list(reversed(batch * 3)))
    assert (len(world.klaviyo.pushes), len(world.mailchimp.pushes)) == sent


def test_a_trait_change_alone_updates_the_properties(world):
    world.sync.sync(world.put("p1", "ana@example.com", {"recent-buyers"}, {"preferred_category": "shoes"}))
    batch = world.put("p1", "ana@example.com", {"recent-buyers"}, {"preferred_category": "bags"})
    assert [n.kind for n in batch] == ["updated"]
    world.sync.sync(batch)
    assert world.klaviyo.properties["ana@example.com"]["PreferredCategory"] == "bags"
    assert world.mailchimp.properties["ana@example.com"]["PREFCAT"] == "bags"
    last = world.klaviyo.pushes[-1]
    assert [(p.add, p.remove, dict(p.set)) for p in last] == [(frozenset(), frozenset(), {"PreferredCategory": "bags"})]


def test_a_suppressed_profile_is_removed_and_never_re_added_while_suppressed(world):
    world.sync.sync(world.put("p1", "ana@example.com", {"recent-buyers", "high-value"}))
    world.sync.sync(world.put("p1", "ana@example.com", {"recent-buyers", "high-value", "suppressed"}))
    assert world.klaviyo.holdings() == {} and world.mailchimp.holdings() == {}
    # still buying while unsubscribed: memberships change, the ESP stays empty, no properties written
    world.sync.sync(world.put("p1", "ana@example.com", {"recent-buyers", "at-risk", "suppressed"},
                              {"preferred_category": "shoes"}))
    assert world.klaviyo.holdings() == {} and world.mailchimp.holdings() == {}
    assert world.klaviyo.properties["ana@example.com"]["PreferredCategory"] is None  # as before suppression


def test_an_erased_profile_is_removed_everywhere_and_forgotten(world):
    world.sync.sync(world.put("p1", "ana@example.com", {"recent-buyers", "high-value", "at-risk"},
                              aliases=("cust#klaviyo#acct#K1",)))
    assert world.klaviyo.holdings() and world.mailchimp.holdings()
    world.sync.sync(world.erase("p1"))
    assert world.klaviyo.holdings() == {} and world.mailchimp.holdings() == {}
    assert world.states.get_many("klaviyo-main", ["p1"]) == {}
    assert world.states.get_many("mailchimp-main", ["p1"]) == {}
    # the removal used the Klaviyo id a Klaviyo webhook taught us: no lookup needed
    assert [p.esp_id for p in world.klaviyo.pushes[-1]] == ["K1"]


def test_a_changed_address_takes_the_old_one_out(world):
    world.sync.sync(world.put("p1", "old@example.com", {"recent-buyers"}))
    batch = world.put("p1", "new@example.com", {"recent-buyers"})
    assert [n.fields for n in batch if n.kind == "updated"] == [("email",)]
    world.sync.sync(batch)
    assert world.klaviyo.holdings() == {"new@example.com": {"L-RB"}}
    assert world.mailchimp.holdings() == {"new@example.com": {"Recent Buyers"}}


def test_a_merge_keeps_the_survivor_in_and_removes_nothing_it_should_hold(world):
    world.sync.sync(world.put("p1", "ana@example.com", {"recent-buyers"}))
    # p2 absorbs p1 (one person): p1's memberships end, p2 holds the address
    p1 = world.store.get("p1")
    p2 = Profile(profile_id="p2", email="ana@example.com", aliases=list(p1.aliases))
    changes = p2.record_evaluation({"recent-buyers", "high-value"}, {}, None, next(world.clock), "merge")
    ended = [MembershipChange(profile_id="p1", segment_id="recent-buyers", change="exited", at=NOW + 99,
                              cause="merge", version=p1.version + 1)]
    world.store.save(p2, [], changes, absorbed=[p1], ended=ended)
    world.sync.sync(notices(ended) + notices(changes))
    assert world.klaviyo.holdings() == {"ana@example.com": {"L-RB"}}
    assert world.mailchimp.holdings() == {"ana@example.com": {"Recent Buyers", "VIP"}}
    assert world.states.get_many("klaviyo-main", ["p1"]) == {}
    # the exits of the absorbed profile arriving alone, later, change nothing either
    world.sync.sync(notices(ended))
    assert world.klaviyo.holdings() == {"ana@example.com": {"L-RB"}}


def test_a_destination_outage_fails_only_its_changes_and_loses_nothing(world):
    batch = world.put("p1", "ana@example.com", {"recent-buyers"}) + world.put("p2", "bo@example.com", {"at-risk"})
    world.klaviyo.fail_next()
    outcome = world.sync.sync(batch)
    assert outcome.failed_messages == {n.message_id for n in batch}  # both concern Klaviyo
    assert outcome.destinations["klaviyo-main"].failed
    assert world.mailchimp.holdings() == {"ana@example.com": {"Recent Buyers"}}  # done regardless
    assert world.klaviyo.holdings() == {}
    again = world.sync.sync([n for n in batch if n.message_id in outcome.failed_messages])
    assert again.failed_messages == set()
    assert world.klaviyo.holdings() == {"ana@example.com": {"L-RB"}, "bo@example.com": {"L-AR"}}


def test_changes_that_concern_no_failing_destination_are_acknowledged(world):
    batch = world.put("p1", "ana@example.com", {"high-value"})  # only Mailchimp maps high-value...
    world.mailchimp.fail_next()
    outcome = world.sync.sync(batch)
    # ...but Klaviyo's Segments property lists it: both concerned; only Mailchimp's failure retries
    assert outcome.failed_messages == {n.message_id for n in batch}
    assert world.klaviyo.properties["ana@example.com"]["Segments"] == ["high-value"]
    world.hooks.down = True
    batch = world.put("p2", "bo@example.com", set(), {"preferred_category": "shoes"})  # a trait: no webhook
    assert world.sync.sync(batch).failed_messages == set()


def test_an_address_the_provider_refuses_is_not_remembered_and_does_not_fail_the_batch(world):
    world.klaviyo.refuse.add("bad@example.com")
    batch = world.put("p1", "bad@example.com", {"recent-buyers"}) + world.put("p2", "ok@example.com", {"recent-buyers"})
    outcome = world.sync.sync(batch)
    assert outcome.failed_messages == set()
    assert outcome.destinations["klaviyo-main"].refused == 1
    assert world.klaviyo.holdings() == {"ok@example.com": {"L-RB"}}
    assert set(world.states.get_many("klaviyo-main", ["p1", "p2"])) == {"p2"}


def test_a_profile_without_email_syncs_nothing(world):
    world.sync.sync(world.put("p1", None, {"recent-buyers"}))
    assert world.klaviyo.pushes == [] and world.mailchimp.pushes == []


def test_ids_learnt_by_a_push_are_remembered_for_removals(world):
    world.sync.sync(world.put("p1", "ana@example.com", {"recent-buyers"}))
    assert world.states.get_many("klaviyo-main", ["p1"])["p1"].esp_id == world.klaviyo.ids["ana@example.com"]
    world.sync.sync(world.put("p1", "ana@example.com", set()))
    assert [p.esp_id for p in world.klaviyo.pushes[-1]] == [world.klaviyo.ids["ana@example.com"]]


def test_webhook_messages_have_stable_ids_and_duplicates_collapse(world):
    batch = world.put("p1", "ana@example.com", {"recent-buyers"})
    first = webhook_messages(batch, {})
    again = webhook_messages(batch + batch, {})
    assert [m["id"] for m in first] == [m["id"] for m in again]


def test_unreadable_queue_records_are_set_aside():
    good = '{"detail-type": "SegmentEntered", "detail": {"profile_id": "p", "segment_id": "s", ' \
           '"at": "2026-01-01T00:00:00Z", "cause": "e", "version": 3}}'
    parsed, bad = parse_messages([("m1", good), ("m2", "not json"), ("m3", '{"detail-type": "CustomerEvent"}'),
                                  ("m4", '{"detail-type": "SegmentExited", "detail": {"profile_id": "p"}}')])
    assert [(n.message_id, n.kind, n.version) for n in parsed] == [("m1", "entered", 3)]
    assert bad == ["m2", "m3", "m4"]


# -- the property: any interleaving, any order, duplicates, outages --------------------------------

EMAILS = ["a@example.com", "b@example.com", "c@example.com"]
SEGMENTS = ["recent-buyers", "at-risk", "high-value", "suppressed"]
step = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 2), st.frozensets(st.sampled_from(SEGMENTS)),
              st.sampled_from(["shoes", "bags", None])),
    st.tuples(st.just("email"), st.integers(0, 2), st.sampled_from(EMAILS), st.none()),
    st.tuples(st.just("erase"), st.integers(0, 2), st.none(), st.none()),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=12), data=st.data())
def test_any_interleaving_delivered_in_any_order_with_duplicates_ends_in_the_desired_state(steps, data):
    world = World()
    emails = {}
    delivered: list[Notice] = []
    for kind, who, arg, category in steps:
        pid = f"p{who}"
        profile = world.store.get(pid)
        if kind == "erase":
            if profile is not None:
                delivered += world.erase(pid)
                emails.pop(pid, None)
            continue
        if kind == "email":
            owner = world.store.find(f"email#{arg}")
            if owner is not None and owner.profile_id != pid:
                continue  # an address belongs to one profile
            emails[pid] = arg
            segments = set(profile.segments) if profile else set()
            traits = dict(profile.traits) if profile else {}
        else:
            segments, traits = set(arg), {"preferred_category": category}
            if pid not in emails:
                candidate = EMAILS[who]
                owner = world.store.find(f"email#{candidate}")
                emails[pid] = candidate if owner is None or owner.profile_id == pid else None
        if profile is None and kind == "email" and world.store.find(f"email#{emails[pid]}") is not None:
            continue
        delivered += world.put(pid, emails[pid], segments, traits)
    # delivery: shuffled, some duplicated, in random batches, some batches hit an outage and come again
    pool = data.draw(st.permutations(delivered + data.draw(st.lists(st.sampled_from(delivered), max_size=5))
                                     if delivered else []))
    queue = list(pool)
    rounds = 0
    while queue and rounds < 50:
        rounds += 1
        size = data.draw(st.integers(1, max(1, len(queue))))
        batch, queue = queue[:size], queue[size:]
        if data.draw(st.booleans()):
            data.draw(st.sampled_from([world.klaviyo, world.mailchimp])).fail_next()
        outcome = world.sync.sync(batch)
        queue += [n for n in batch if n.message_id in outcome.failed_messages]
    assert not queue
    # then every remaining profile's latest change is delivered once more (as the sweep or the next
    # event would), which must not change anything either
    for destination_id, esp in (("klaviyo-main", world.klaviyo), ("mailchimp-main", world.mailchimp)):
        assert esp.holdings() == world.desired(destination_id), destination_id


def test_an_erasure_reaches_destinations_where_the_person_was_in_no_synced_segment(world):
    from fakes import RecordingPublisher
    from segmentation.domain.evaluation import CatalogEvaluator
    from segmentation.service.profiles import ProfileService

    # at-risk goes to Klaviyo only; Mailchimp holds her merge fields (and the sync remembers them)
    world.sync.sync(world.put("p1", "ana@example.com", {"at-risk"}, {"preferred_category": "shoes"}))
    assert set(world.states.get_many("mailchimp-main", ["p1"])) == {"p1"}
    evaluator = CatalogEvaluator(CATALOG)  # its own: the shared default evaluator watches nothing
    evaluator.watch = DESTINATIONS.watched()
    publisher = RecordingPublisher()
    service = ProfileService(world.store, evaluator, publisher, clock=lambda: NOW + 100)
    changes = service.erase(["email#ana@example.com"], "erasure:p1")
    assert ("updated", ("erased",)) in [(c.change, c.fields) for c in changes]
    world.sync.sync(notices(changes))
    assert world.states.get_many("mailchimp-main", ["p1"]) == {}
    assert world.states.get_many("klaviyo-main", ["p1"]) == {}
    assert world.klaviyo.holdings() == {}


def test_without_a_destinations_file_an_erasure_publishes_only_the_exits(world):
    from fakes import RecordingPublisher
    from segmentation.domain.evaluation import default_evaluator
    from segmentation.service.profiles import ProfileService

    world.put("p1", "ana@example.com", {"at-risk"})
    service = ProfileService(world.store, default_evaluator(), RecordingPublisher(), clock=lambda: NOW + 100)
    assert [c.change for c in service.erase(["email#ana@example.com"], "erasure:p1")] == ["exited"]


# -- reconcile -------------------------------------------------------------------------------------


def reconciler(world, chunk: int = 1000) -> Reconcile:
    return Reconcile(DESTINATIONS, world.store, world.states, world.client, CATALOG, chunk=chunk)


def test_a_reconcile_repairs_what_the_esp_holds_and_its_dry_run_sends_nothing(world):
    for n in range(5):
        world.sync.sync(world.put(f"p{n}", f"c{n}@example.com", {"recent-buyers"}))
    # drift: someone removes two people by hand and adds a stranger; one update never reached the ESP
    world.klaviyo.members_of["L-RB"] -= {"c0@example.com", "c1@example.com"}
    world.klaviyo.members_of["L-RB"].add("stray@example.com")
    world.klaviyo.members_of.setdefault("L-AR", set()).add("c2@example.com")
    before = {t: set(m) for t, m in world.klaviyo.members_of.items()}
    dry = reconciler(world).run("klaviyo-main", dry_run=True)
    assert dry.targets["L-RB"].added == 2 and dry.targets["L-RB"].removed == 1 and dry.targets["L-AR"].removed == 1
    assert dry.strays == 1 and world.klaviyo.members_of == before  # nothing sent
    done = reconciler(world).run("klaviyo-main")
    assert world.klaviyo.holdings() == world.desired("klaviyo-main")
    assert done.pushes == dry.pushes
    again = reconciler(world).run("klaviyo-main")
    assert again.pushes == 0  # nothing left to repair


def test_a_reconcile_cut_off_midway_resumes_with_what_is_left(world):
    for n in range(6):
        world.put(f"p{n}", f"c{n}@example.com", {"recent-buyers"})  # never synced: a new destination
    calls = {"n": 0}
    real_push = world.klaviyo.push

    def push_then_fail(pushes):  # the destination goes down after the first chunk
        calls["n"] += 1
        if calls["n"] == 2:
            raise DestinationUnavailableError("klaviyo: down")
        return real_push(pushes)

    world.klaviyo.push = push_then_fail
    with pytest.raises(DestinationUnavailableError):
        reconciler(world, chunk=2).run("klaviyo-main")
    assert len(world.klaviyo.holdings()) == 2  # the first chunk was applied
    world.klaviyo.push = real_push
    rest = reconciler(world, chunk=2).run("klaviyo-main")
    assert rest.pushes == 4  # only what was left
    assert world.klaviyo.holdings() == world.desired("klaviyo-main")


def test_a_webhook_or_unknown_destination_cannot_be_reconciled(world):
    from segmentation.errors import InvalidInputError, NotFoundError

    with pytest.raises(InvalidInputError, match="webhook"):
        reconciler(world).run("hooks")
    with pytest.raises(NotFoundError, match="klaviyo-main, mailchimp-main, hooks"):
        reconciler(world).run("nope")


def test_the_profile_path_announces_a_changed_email_and_changed_synced_traits_only():
    from datetime import UTC, datetime
    from decimal import Decimal

    from fakes import RecordingPublisher
    from segmentation.domain.evaluation import CatalogEvaluator
    from segmentation.domain.events import (
        CustomerEvent,
        CustomerProperties,
        EventType,
        Identity,
        LineItem,
        OrderProperties,
    )
    from segmentation.service.profiles import ProfileService

    store, publisher = InMemoryProfileStore(due_shards=4), RecordingPublisher()
    evaluator = CatalogEvaluator(CATALOG)
    evaluator.watch = DESTINATIONS.watched()  # preferred_category, order_count, email
    clock = itertools.count(NOW)
    service = ProfileService(store, evaluator, publisher, clock=lambda: next(clock))

    def order(n: int, email: str, category: str) -> CustomerEvent:
        at = datetime.fromtimestamp(NOW - 3600 + n, UTC)
        return CustomerEvent(event_id=f"o{n}", source="shopify", shop="s.myshopify.com", type=EventType.ORDER,
                             occurred_at=at, identity=Identity(email=email, customer_ids={"shopify": "77"}),
                             properties=OrderProperties(order_id=f"o{n}", total=Decimal("10"), updated_at=at,
                                                        items=[LineItem(category=category)]))

    def updated(changes) -> list[tuple[str, ...]]:
        return [c.fields for c in changes if c.change == "updated"]

    assert updated(service.apply(order(1, "ana@example.com", "shoes"))) == [("order_count", "preferred_category")]
    assert updated(service.apply(order(2, "ana@example.com", "shoes"))) == [("order_count",)]
    # the customer record now shows another address: the email alias moves, the ESPs must follow
    at = datetime.fromtimestamp(NOW - 60, UTC)
    moved = service.apply(CustomerEvent(
        event_id="c1", source="shopify", shop="s.myshopify.com", type=EventType.CUSTOMER, occurred_at=at,
        identity=Identity(email="ana.new@example.com", customer_ids={"shopify": "77"}),
        properties=CustomerProperties()))
    assert store.get(moved[0].profile_id).email == "ana.new@example.com"
    assert updated(moved) == [("email",)]
    last = publisher.drain()[-1]
    assert (last["detail-type"], last["detail"]["fields"]) == ("ProfileUpdated", ["email"])  # on the bus
