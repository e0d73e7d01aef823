"""The ports' contract, checked against both implementations: the in-memory fakes the service tests
run on (tests/fakes.py) and the DynamoDB stores on moto. A fake that drifts from what DynamoDB does
fails here, not in production."""

from __future__ import annotations

import inspect

import pytest
from fakes import InMemoryDeliveryLog, InMemoryProfileStore, InMemoryShopStore
from segmentation import bootstrap
from segmentation.domain import identity
from segmentation.domain.events import Identity, LineItem
from segmentation.domain.profile import MembershipChange, Profile
from segmentation.infra.delivery_log import DynamoDBDeliveryLog
from segmentation.infra.profile_store import DynamoDBProfileStore
from segmentation.infra.shop_store import DynamoDBShopStore
from segmentation.service.ports import (
    ConcurrentUpdateError,
    DeliveryLog,
    InvalidCursorError,
    ProfileStore,
    ShopStore,
)

NOW = 1_750_000_000
DAY = 86400


@pytest.fixture(params=["memory", "dynamodb"])
def store(request) -> ProfileStore:
    if request.param == "dynamodb":
        request.getfixturevalue("aws")
        return bootstrap.repository()
    return InMemoryProfileStore(due_shards=32)


@pytest.fixture(params=["memory", "dynamodb"])
def shops(request) -> ShopStore:
    if request.param == "dynamodb":
        request.getfixturevalue("aws")
        return bootstrap.shop_store()
    return InMemoryShopStore()


@pytest.fixture(params=["memory", "dynamodb"])
def deliveries(request) -> DeliveryLog:
    if request.param == "dynamodb":  # the table exists with WebhookDuplicateAnswer=on only
        import boto3
        from segctl.provision import create_tables
        from segctl.template import Template
        from support import TEMPLATE

        request.getfixturevalue("aws")
        on = Template(TEMPLATE, parameters={"WebhookDuplicateAnswer": "on"})
        create_tables(on, boto3.client("dynamodb"))
        return DynamoDBDeliveryLog(boto3.client("dynamodb"), on.physical_name("DeliveriesTable"))
    return InMemoryDeliveryLog()


def evaluated(profile: Profile, segments: set[str], at: int = NOW, due: int | None = None,
              cause: str = "e") -> list[MembershipChange]:
    return profile.record_evaluation(segments, {}, due, at, cause)


def new(store, pid: str, *aliases: str, segments: set[str] = frozenset(), at: int = NOW,
        due: int | None = None) -> Profile:
    profile = Profile(profile_id=pid, aliases=list(aliases))
    store.save(profile, list(aliases), evaluated(profile, set(segments), at, due))
    return profile


@pytest.mark.parametrize(("port", "implementations"), [
    (ProfileStore, (InMemoryProfileStore, DynamoDBProfileStore)),
    (ShopStore, (InMemoryShopStore, DynamoDBShopStore)),
    (DeliveryLog, (InMemoryDeliveryLog, DynamoDBDeliveryLog)),
])
def test_both_implementations_have_every_method_of_the_port_with_its_parameters(port, implementations):
    methods = [name for name, value in vars(port).items() if callable(value) and not name.startswith("_")]
    assert methods
    for cls in implementations:
        for name in methods:
            wanted = list(inspect.signature(getattr(port, name)).parameters)
            assert list(inspect.signature(getattr(cls, name)).parameters) == wanted, (cls.__name__, name)


# -- profiles and aliases ---------------------------------------------------------------------------


def test_a_saved_profile_is_found_by_id_and_by_each_alias(store):
    ana = new(store, "p-ana", "email#ana@example.com", "cust#shopify#s#1")
    assert ana.version == 1
    assert store.get("p-ana").version == 1 and store.get("p-ana").aliases == ana.aliases
    assert store.find("cust#shopify#s#1").profile_id == "p-ana"
    assert store.get("nobody") is None and store.find("email#nobody@example.com") is None
    loaded = store.load(["email#other@example.com", "cust#shopify#s#1", "email#ana@example.com"])
    assert loaded.profile.profile_id == "p-ana"
    assert loaded.alias_owners == {"cust#shopify#s#1": "p-ana", "email#ana@example.com": "p-ana"}
    assert loaded.erased_at == {}
    assert store.load(["email#other@example.com"]).profile is None
    assert store.count_profiles() == 1


def test_what_is_stored_is_a_copy(store):
    ana = new(store, "p-ana", "email#ana@example.com")
    ana.first_name = "changed after the write"
    assert store.get("p-ana").first_name is None


def test_a_write_on_a_stale_version_fails_and_writes_nothing(store):
    new(store, "p-ana", "email#ana@example.com")
    first, second = store.get("p-ana"), store.get("p-ana")
    store.save(first, [], evaluated(first, {"recent-buyers"}))
    second.aliases.append("phone#15550100")
    with pytest.raises(ConcurrentUpdateError):
        store.save(second, ["phone#15550100"], evaluated(second, {"at-risk"}))
    assert store.find("phone#15550100") is None
    assert store.get("p-ana").version == 2 and store.segment_size("at-risk") == 0
    with pytest.raises(ConcurrentUpdateError):  # a new profile whose id exists
        store.save(Profile(profile_id="p-ana"), [], [])
    with pytest.raises(ConcurrentUpdateError):  # an update of a profile that is gone
        store.save(Profile(profile_id="p-gone", version=3), [], [])


def test_an_alias_held_by_another_profile_cannot_be_claimed(store):
    new(store, "p-ana", "email#ana@example.com")
    other = Profile(profile_id="p-other", aliases=["email#ana@example.com"])
    with pytest.raises(ConcurrentUpdateError):
        store.save(other, ["email#ana@example.com"], [])
    assert store.get("p-other") is None and store.find("email#ana@example.com").profile_id == "p-ana"
    ana = store.get("p-ana")
    store.save(ana, ["email#ana@example.com"], [])  # claiming one's own alias again is fine


def test_membership_changes_keep_members_sizes_and_the_last_change(store):
    for n in range(5):
        new(store, f"p{n}", f"email#{n}@example.com", segments={"recent-buyers", "category-browsers:shoes"},
            at=NOW + n)
    assert store.segment_size("recent-buyers") == 5
    assert store.segment_stats("recent-buyers").last_change_at == NOW + 4
    p2 = store.get("p2")
    store.save(p2, [], evaluated(p2, {"category-browsers:shoes"}, at=NOW + 100))
    stats = store.segment_stats("recent-buyers")
    assert (stats.size, stats.last_change_at) == (4, NOW + 100)
    assert store.all_members("recent-buyers") == {"p0", "p1", "p3", "p4"}
    assert store.family_values("category-browsers") == ["shoes"]
    assert store.segment_stats("repeat-buyers").size == 0 and store.segment_stats("repeat-buyers").last_change_at is None
    seen, cursor = [], None
    for _ in range(10):
        page = store.members("recent-buyers", 3, cursor)
        assert len(page.profile_ids) <= 3
        seen += page.profile_ids
        cursor = page.cursor
        if cursor is None:
            break
    assert seen == ["p0", "p1", "p3", "p4"]  # ordered by profile id, each once
    first = store.members("recent-buyers", 1, None)
    with pytest.raises(InvalidCursorError):
        store.members("category-browsers:shoes", 1, first.cursor)  # another segment's cursor
    with pytest.raises(InvalidCursorError):
        store.members("recent-buyers", 1, "bm90LW91cnM")


def test_a_merge_deletes_the_absorbed_profile_re_points_its_aliases_and_ends_its_memberships(store):
    new(store, "p-buyer", "email#ana@example.com", segments={"recent-buyers"})
    new(store, "p-anon", "anon#a1", segments={"recent-browsers"})
    survivor, absorbed = store.get("p-buyer"), store.get("p-anon")
    ended = [MembershipChange(profile_id="p-anon", segment_id="recent-browsers", change="exited", at=NOW + 10,
                              cause="merge", version=absorbed.version + 1)]
    identity.merge(survivor, absorbed)
    changes = evaluated(survivor, {"recent-buyers", "recent-browsers"}, at=NOW + 10, cause="merge")
    stale = absorbed.model_copy(update={"version": absorbed.version - 1})
    with pytest.raises(ConcurrentUpdateError):
        store.save(survivor.model_copy(deep=True), [], changes, absorbed=[stale], ended=ended)
    store.save(survivor, [], changes, absorbed=[absorbed], ended=ended)
    assert store.get("p-anon") is None
    assert store.find("anon#a1").profile_id == "p-buyer"
    assert store.all_members("recent-browsers") == {"p-buyer"} and store.segment_size("recent-browsers") == 1
    history = store.history_page(store.get("p-buyer"), NOW + 20, 100, None).changes
    assert ("p-anon", "recent-browsers", "exited") in {(c["profile_id"], c["segment_id"], c["change"])
                                                        for c in history}


def test_an_alias_given_up_is_removed(store):
    new(store, "p-ana", "email#old@example.com")
    ana = store.get("p-ana")
    identity.change_email(ana, "new@example.com", "old@example.com", NOW)
    store.save(ana, ["email#new@example.com"], [], removed_aliases=["email#old@example.com"])
    assert store.find("email#old@example.com") is None
    assert store.find("email#new@example.com").profile_id == "p-ana"


# -- erasure ------------------------------------------------------------------------------------


def test_erasure_removes_the_profile_its_aliases_memberships_and_history_and_keeps_tombstones(store):
    new(store, "p-ana", "email#ana@example.com", "phone#15550100", segments={"recent-buyers"})
    new(store, "p-ben", "email#ben@example.com", segments={"recent-buyers"})
    ana = store.get("p-ana")
    stale = ana.model_copy(update={"version": ana.version + 1})
    with pytest.raises(ConcurrentUpdateError):
        store.erase(stale, NOW + 50)
    store.erase(ana, NOW + 50)
    assert store.get("p-ana") is None and store.find("email#ana@example.com") is None
    assert store.all_members("recent-buyers") == {"p-ben"}
    stats = store.segment_stats("recent-buyers")
    assert (stats.size, stats.last_change_at) == (1, NOW + 50)
    loaded = store.load(["email#ana@example.com", "phone#15550100", "email#ben@example.com"])
    assert loaded.erased_at == {"email#ana@example.com": NOW + 50, "phone#15550100": NOW + 50}
    assert loaded.profile.profile_id == "p-ben"
    assert store.history_page(Profile(profile_id="p-ana"), NOW + 60, 100, None).changes == []
    store.tombstone(["email#never@example.com"], NOW + 70)
    assert store.load(["email#never@example.com"]).erased_at == {"email#never@example.com": NOW + 70}
    assert store.count_profiles() == 1


# -- history ------------------------------------------------------------------------------------


def test_history_pages_add_up_to_every_change_newest_first_within_the_retention(store):
    ana = new(store, "p-ana", "email#ana@example.com", segments={"recent-buyers"}, at=NOW)
    for n, segments in enumerate([{"recent-buyers", "at-risk"}, {"at-risk"}, set(), {"inactive"}], start=1):
        store.save(ana, [], evaluated(ana, segments, at=NOW + n * DAY))
    whole = store.history_page(ana, NOW + 5 * DAY, 1000, None)
    assert whole.cursor is None
    assert [(c["segment_id"], c["change"], c["at"]) for c in whole.changes] == [
        ("inactive", "entered", NOW + 4 * DAY), ("at-risk", "exited", NOW + 3 * DAY),
        ("recent-buyers", "exited", NOW + 2 * DAY), ("at-risk", "entered", NOW + DAY),
        ("recent-buyers", "entered", NOW)]
    assert [c["version"] for c in whole.changes] == [5, 4, 3, 2, 1]
    paged, cursor = [], None
    for _ in range(10):
        page = store.history_page(ana, NOW + 5 * DAY, 2, cursor)
        assert len(page.changes) <= 2
        paged += page.changes
        cursor = page.cursor
        if cursor is None:
            break
    assert paged == whole.changes
    # 400 days of retention: a day later, the first change is no longer shown.
    later = store.history_page(ana, NOW + 400 * DAY + 1, 1000, None).changes
    assert [c["at"] for c in later] == [NOW + 4 * DAY, NOW + 3 * DAY, NOW + 2 * DAY, NOW + DAY]
    with pytest.raises(InvalidCursorError):
        store.history_page(ana, NOW, 2, "bm90LW91cnM")


# -- the due index ------------------------------------------------------------------------------


def due_ids(store, now: int, limit: int = 1000) -> list[str]:
    out = []
    for shard in range(32):
        start = None
        while True:
            profiles, start = store.due_page(shard, now, limit, start)
            out += [p.profile_id for p in profiles]
            if start is None:
                break
    return out


def test_the_due_index_holds_profiles_due_at_or_before_now(store):
    new(store, "p-due", "email#due@example.com", due=NOW + 100)
    new(store, "p-later", "email#later@example.com", due=NOW + 200)
    new(store, "p-never", "email#never@example.com")
    assert due_ids(store, NOW + 99) == []
    assert due_ids(store, NOW + 100) == ["p-due"]  # next_due_at <= now: due at the instant itself
    assert sorted(due_ids(store, NOW + 10**6)) == ["p-due", "p-later"]
    [profile] = [p for shard in range(32) for p in store.due_page(shard, NOW + 100, 10, None)[0]]
    assert profile.profile_id == "p-due" and profile.version == 1 and profile.next_due_at == NOW + 100


def test_a_profile_with_parked_changes_is_due_at_once_and_leaves_the_index_when_nothing_is_due(store):
    ana = new(store, "p-ana", "email#ana@example.com", due=NOW + 30 * DAY)
    ana.park(evaluated(ana, {"recent-buyers"}, at=NOW + 10))
    store.save(ana, [], [])
    assert due_ids(store, NOW + 10) == ["p-ana"]
    ana.clear_parked()
    ana.next_due_at = None
    store.save(ana, [], [])
    assert due_ids(store, NOW + 10**6) == []


def test_a_later_due_instant_leaves_the_entry_where_it_was_until_it_is_moved(store):
    ana = new(store, "p-ana", "email#ana@example.com", due=NOW + 7 * DAY)
    evaluated(ana, set(), at=NOW + DAY, due=NOW + 8 * DAY)  # an event a day later pushes the due by a day
    store.save(ana, [], [])
    assert due_ids(store, NOW + 7 * DAY) == ["p-ana"]  # still found at the earlier instant (no index write)
    [early] = [p for shard in range(32) for p in store.due_page(shard, NOW + 7 * DAY, 10, None)[0]]
    assert early.next_due_at == NOW + 8 * DAY  # the profile itself knows its real due instant
    store.move_due(early)
    assert due_ids(store, NOW + 7 * DAY) == [] and due_ids(store, NOW + 8 * DAY) == ["p-ana"]
    # an earlier due instant always moves the entry
    fresh = store.get("p-ana")
    evaluated(fresh, set(), at=NOW + 2 * DAY, due=NOW + 3 * DAY)
    store.save(fresh, [], [])
    assert due_ids(store, NOW + 3 * DAY) == ["p-ana"]
    # a move by a reader whose copy is out of date does nothing: the newer write placed the entry
    store.move_due(early)
    assert due_ids(store, NOW + 3 * DAY) == ["p-ana"]


def test_due_pages_go_oldest_first_and_add_up(store):
    for n in range(40):
        new(store, f"p{n:02d}", f"email#{n}@example.com", due=NOW + 1000 - n)
    pages = []
    for shard in range(32):
        start = None
        while True:
            profiles, start = store.due_page(shard, NOW + 1000, 2, start)
            assert len(profiles) <= 2
            pages.append([p.next_due_at for p in profiles])
            if start is None:
                break
    every = [d for page in pages for d in page]
    assert sorted(every) == sorted(NOW + 1000 - n for n in range(40))
    for page in pages:
        assert page == sorted(page)


# -- scans, alias prefixes, progress -------------------------------------------------------------


def test_scan_segments_partition_the_profiles(store):
    for n in range(25):
        new(store, f"p{n:02d}", f"email#{n}@example.com")
    seen = []
    for segment in range(3):
        start = None
        while True:
            profiles, start = store.scan_page(segment, 3, 4, start)
            assert len(profiles) <= 4
            seen += [p.profile_id for p in profiles]
            if start is None:
                break
            assert set(start) == {"profile_id"} and set(start["profile_id"]) == {"S"}
    assert sorted(seen) == [f"p{n:02d}" for n in range(25)]


def test_owners_of_an_alias_prefix(store):
    new(store, "p-a", "cust#shopify#one.myshopify.com#1", "email#a@example.com")
    new(store, "p-b", "order#shopify#one.myshopify.com#9")
    new(store, "p-c", "cust#shopify#two.myshopify.com#1")
    assert store.owners_with_alias_prefix("cust#shopify#one.myshopify.com#") == {"p-a"}
    assert store.owners_with_alias_prefix("cust#shopify#") == {"p-a", "p-c"}
    assert store.owners_with_alias_prefix("phone#") == set()


def test_job_progress_is_kept_per_part(store):
    store.record_progress("backfill-v1", "1", 10, 2, False)
    store.record_progress("backfill-v1", "0", 5, 5, True)
    store.record_progress("backfill-v1", "1", 20, 4, True)
    store.record_progress("backfill-v2", "0", 1, 1, False)
    assert store.progress("backfill-v1") == [{"part": "0", "scanned": 5, "updated": 5, "done": True},
                                             {"part": "1", "scanned": 20, "updated": 4, "done": True}]
    assert store.progress("backfill-v3") == []


# -- the shop store -------------------------------------------------------------------------------


def test_product_categories(shops):
    shops.put_product("s1", "10", "shirts")
    shops.put_product("s1", "11", "shoes")
    shops.put_product("s2", "10", "hats")
    assert shops.categories("s1", ["10", "11", "12", "10"]) == {"10": "shirts", "11": "shoes"}
    shops.put_product("s1", "11", None)  # no category any more: forgotten
    assert shops.categories("s1", ["11"]) == {} and shops.categories("s2", ["10"]) == {"10": "hats"}


def test_carts_their_owners_and_forgetting_them(shops):
    items = [LineItem(product_id="10", title="Linen Shirt", quantity=1)]
    shops.put_cart("s1.myshopify.com", "t1", items, NOW)
    shops.put_cart_owner("s1.myshopify.com", "t1", Identity(email="ana@example.com"), NOW)
    shops.put_cart("s1.myshopify.com", "t2", items, NOW)
    shops.put_cart_owner("s1.myshopify.com", "t2", Identity(email="ben@example.com"), NOW)
    assert shops.cart("s1.myshopify.com", "t1") == items and shops.cart("s1.myshopify.com", "t9") is None
    assert shops.cart_owner("s1.myshopify.com", "t1") == Identity(email="ana@example.com")
    assert shops.forget(["email#ana@example.com"]) == 1
    assert shops.cart("s1.myshopify.com", "t1") is None and shops.cart_owner("s1.myshopify.com", "t1") is None
    assert shops.cart_owner("s1.myshopify.com", "t2") == Identity(email="ben@example.com")


def test_forgetting_a_shop_leaves_the_others(shops):
    items = [LineItem(product_id="10", title="Linen Shirt", quantity=1)]
    for shop in ("one.myshopify.com", "two.myshopify.com"):
        shops.put_product(shop, "10", "shirts")
        shops.put_cart(shop, "t1", items, NOW)
        shops.put_cart_owner(shop, "t1", Identity(email="ana@example.com"), NOW)
    assert shops.forget_shop("one.myshopify.com") == 3
    assert shops.categories("one.myshopify.com", ["10"]) == {} and shops.cart("one.myshopify.com", "t1") is None
    assert shops.categories("two.myshopify.com", ["10"]) == {"10": "shirts"}
    assert shops.cart_owner("two.myshopify.com", "t1") == Identity(email="ana@example.com")


# -- the deliveries accepted (WebhookDuplicateAnswer) -------------------------------------------------


def test_a_delivery_is_new_once_until_it_expires(deliveries):
    assert deliveries.remember("d1", NOW, NOW + 100) is True
    assert deliveries.remember("d1", NOW + 50, NOW + 150) is False  # seen; kept as it was
    assert deliveries.remember("d2", NOW + 50, NOW + 150) is True  # another delivery
    assert deliveries.remember("d1", NOW + 99, NOW + 199) is False  # still within the first expiry
    assert deliveries.remember("d1", NOW + 100, NOW + 200) is True  # expired (TTL may not have deleted it)
    assert deliveries.remember("d1", NOW + 150, NOW + 250) is False


def test_a_family_value_is_registered_once_per_execution_environment_and_every_environment_lists_it(aws):
    """Cost (issue 13): the registration that lets the API list a family's values is written by the
    first entry of a value in an execution environment, not by every entry; another environment
    still lists it, and registers a value of its own."""
    first, second = bootstrap.repository(), DynamoDBProfileStore(**_same_tables(bootstrap.repository()))
    registrations: list[str] = []

    def count(params, **_):
        for write in params.get("TransactItems", []):
            item = write.get("Put", {}).get("Item", {})
            if item.get("segment_id", {}).get("S", "").startswith("#family#"):
                registrations.append(item["profile_id"]["S"])

    first.client.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", count)
    for n in range(3):
        new(first, f"p{n}", f"email#{n}@example.com", segments={"category-browsers:shoes"}, at=NOW + n)
    assert registrations == ["shoes"]
    assert second.family_values("category-browsers") == ["shoes"]
    new(second, "p9", "email#9@example.com", segments={"category-browsers:boots", "category-browsers:shoes"})
    assert registrations == ["shoes", "boots"]  # (one client: both environments' writes are seen here)
    assert sorted(first.family_values("category-browsers")) == ["boots", "shoes"]
    new(first, "p10", "email#10@example.com", segments={"category-browsers:boots"})  # listed above: known
    assert registrations == ["shoes", "boots"]


def _same_tables(store: DynamoDBProfileStore) -> dict:
    return {"client": store.client, "profiles_table": store.profiles, "aliases_table": store.aliases,
            "memberships_table": store.memberships, "due_shards": store.due_shards, "history_table": store.history}


def test_a_profile_item_keeps_the_person_only_inside_its_compressed_state(aws):
    """The profile item is its key, version, compressed state and due entry: no email in plain text
    beside the state (it cost every write ~25 bytes and nothing read it), and the id not again inside."""
    import boto3
    from segmentation.infra.profile_store import inflate_state

    store = bootstrap.repository()
    profile = Profile(profile_id="p-plain", email="ana@example.com", emails=["ana@example.com"],
                      aliases=["email#ana@example.com"])
    store.save(profile, ["email#ana@example.com"], evaluated(profile, {"s1"}, due=NOW + DAY))
    item = boto3.client("dynamodb").get_item(TableName=aws.physical_name("ProfilesTable"),
                                             Key={"profile_id": {"S": "p-plain"}})["Item"]
    assert set(item) == {"profile_id", "version", "state", "next_due_at", "due_shard"}
    state = inflate_state(item["state"]["B"])
    assert b"ana@example.com" in state and b"p-plain" not in state
    assert store.get("p-plain").email == "ana@example.com"
