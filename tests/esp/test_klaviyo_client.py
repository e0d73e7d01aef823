"""The ESP sync's Klaviyo client (segmentation/infra/esp/klaviyo.py) against the fake Klaviyo, which
checks every request against Klaviyo's OpenAPI document: end states, request counts, refusals,
faults, and that nothing ever touches consent."""

from __future__ import annotations

import time

import pytest
from segctl.espfakes.klaviyo import FakeKlaviyo
from segmentation.infra.esp.klaviyo import KlaviyoClient
from segmentation.service.ports import DestinationUnavailableError, Push

BULK = "/api/profile-bulk-import-jobs"
QUICK = {"attempts": 6, "backoff_factor": 0.01, "backoff_max": 0.05}


@pytest.fixture
def fake(fake_klaviyo: FakeKlaviyo):
    yield fake_klaviyo
    assert fake_klaviyo.response_errors == [], "the fake answered something Klaviyo's document does not allow"


@pytest.fixture
def client(fake: FakeKlaviyo) -> KlaviyoClient:
    return KlaviyoClient(fake.api_key, base_url=fake.base_url, **QUICK)


def ids_of(fake: FakeKlaviyo, emails) -> dict[str, str]:
    return {email: fake.profile_by_email(email)["id"] for email in emails}


def state(fake: FakeKlaviyo) -> dict:
    """The fake's profiles and lists, without the job count (which grows with every push)."""
    snapshot = fake.snapshot()
    return {"profiles": snapshot["profiles"], "lists": snapshot["lists"]}


def emails(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i}@example.com" for i in range(n)]


def test_an_addition_with_properties_lands_in_the_list_with_them(fake, client):
    vip = fake.create_list("VIP")
    result = client.push([
        Push("Ann@Example.com", add=frozenset({vip}), set={"tier": "gold", "ltv": 120.5, "segments": ["vip"]}),
        Push("bob@example.com", set={"tier": "silver"}),
    ])
    assert result.failed == {} and result.learned_ids == {}
    assert result.calls == 2 == fake.call_count("POST", BULK)
    assert fake.members(vip) == {"ann@example.com"}
    assert fake.profile_by_email("ann@example.com")["properties"] == {"tier": "gold", "ltv": 120.5, "segments": ["vip"]}
    assert fake.profile_by_email("bob@example.com")["properties"] == {"tier": "silver"}

    # None unsets a property (meta.patch_properties.unset); the others stay
    again = client.push([Push("ann@example.com", set={"tier": None, "ltv": 130})])
    assert again.calls == 1
    assert fake.profile_by_email("ann@example.com")["properties"] == {"ltv": 130, "segments": ["vip"]}
    assert fake.members(vip) == {"ann@example.com"}
    assert fake.invalid == []


def test_a_removal_with_a_known_id_needs_no_lookup(fake, client):
    segment = fake.create_list("S")
    client.push([Push(e, add=frozenset({segment})) for e in emails("m", 3)])
    known = ids_of(fake, emails("m", 3))
    before = fake.call_count()
    result = client.push([Push("m1@example.com", remove=frozenset({segment}), esp_id=known["m1@example.com"])])
    assert result.failed == {} and result.learned_ids == {}
    assert result.calls == 1
    removal = ("DELETE", f"/api/lists/{segment}/relationships/profiles")
    assert [(c.method, c.path) for c in fake.calls[before:]] == [removal]
    assert fake.members(segment) == {"m0@example.com", "m2@example.com"}
    assert fake.invalid == []


def test_a_removal_without_id_looks_it_up_and_returns_what_it_learnt(fake, client):
    segment = fake.create_list("S")
    client.push([Push(e, add=frozenset({segment})) for e in emails("m", 3)])
    known = ids_of(fake, emails("m", 3))
    before = fake.call_count()
    result = client.push([Push("M0@example.com", remove=frozenset({segment})),
                          Push("m2@example.com", remove=frozenset({segment}))])
    assert result.failed == {}
    assert result.learned_ids == {"m0@example.com": known["m0@example.com"], "m2@example.com": known["m2@example.com"]}
    lookup, removal = fake.calls[before:]
    assert (lookup.method, lookup.path) == ("GET", "/api/profiles")
    assert "any%28email" in lookup.query and "fields%5Bprofile%5D=email" in lookup.query
    assert (removal.method, removal.path) == ("DELETE", f"/api/lists/{segment}/relationships/profiles")
    assert result.calls == 2
    assert fake.members(segment) == {"m1@example.com"}
    assert fake.invalid == []


def test_removing_an_email_klaviyo_does_not_have_is_no_failure(fake, client):
    segment = fake.create_list("S")
    client.push([Push("here@example.com", add=frozenset({segment}))])
    result = client.push([Push("never-seen@example.com", remove=frozenset({segment})),
                          Push("here@example.com", remove=frozenset({segment}))])
    assert result.failed == {}
    assert set(result.learned_ids) == {"here@example.com"}
    assert fake.members(segment) == set()
    assert fake.profile_by_email("never-seen@example.com") is None  # a removal creates nobody
    only_unknown = client.push([Push("never-seen@example.com", remove=frozenset({segment}))])
    assert only_unknown.failed == {} and only_unknown.learned_ids == {}
    assert only_unknown.calls == 1  # the lookup; nothing to remove
    assert fake.invalid == []


def thousand_pushes(fake: FakeKlaviyo, a: str, b: str) -> list[Push]:
    """600 joining list A with properties, 300 with properties only, 100 leaving list B (ids known)."""
    leaving = ids_of(fake, emails("b", 100))
    return (
        [Push(e, add=frozenset({a}), set={"tier": "gold", "rank": i}) for i, e in enumerate(emails("a", 600))]
        + [Push(e, set={"tier": "silver", "score": None}) for e in emails("p", 300)]
        + [Push(e, remove=frozenset({b}), esp_id=i) for e, i in leaving.items()]
    )


def test_a_thousand_pushes_take_a_handful_of_requests_and_a_replay_changes_nothing(fake, client):
    a, b = fake.create_list("A"), fake.create_list("B")
    client.push([Push(e, add=frozenset({b}), set={"score": 1}) for e in emails("b", 100)]
                + [Push(e, set={"score": 7}) for e in emails("p", 300)])
    pushes = thousand_pushes(fake, a, b)
    before = fake.call_count()

    result = client.push(pushes)
    assert result.failed == {} and result.learned_ids == {}
    assert result.calls <= 5
    assert result.calls == fake.call_count() - before == 3  # two bulk import jobs and one removal
    assert fake.members(a) == set(emails("a", 600))
    assert fake.members(b) == set()
    assert fake.profile_by_email("a599@example.com")["properties"] == {"tier": "gold", "rank": 599}
    assert fake.profile_by_email("p0@example.com")["properties"] == {"tier": "silver"}  # score unset
    assert fake.profile_by_email("b0@example.com")["properties"] == {"score": 1}
    after = state(fake)

    replay = client.push(pushes)
    assert replay.failed == {} and replay.calls == 3
    assert state(fake) == after
    assert fake.invalid == []


def test_throttling_and_a_5xx_burst_lose_nothing(fake, client):
    a, b = fake.create_list("A"), fake.create_list("B")
    client.push([Push(e, add=frozenset({b}), set={"score": 1}) for e in emails("b", 100)])
    pushes = thousand_pushes(fake, a, b)
    before = fake.call_count()
    fake.fail_next(1, status=429, retry_after=1)
    fake.fail_next(3, status=503)

    started = time.perf_counter()
    result = client.push(pushes)
    assert time.perf_counter() - started >= 1  # Retry-After honoured
    assert result.failed == {}
    assert result.calls == fake.call_count() - before == 3 + 4  # every retry counted
    assert [c.status for c in fake.calls[before:]].count(202) == 2
    assert fake.members(a) == set(emails("a", 600)) and fake.members(b) == set()
    assert all(fake.profile_by_email(e)["properties"] == {"tier": "silver"} for e in emails("p", 300))
    assert fake.invalid == []


def test_a_5xx_that_never_ends_raises_destination_unavailable(fake, client):
    segment = fake.create_list("S")
    fake.fail_next(1000, status=503)
    with pytest.raises(DestinationUnavailableError) as raised:
        client.push([Push("ann@example.com", add=frozenset({segment}))])
    assert "ann@example.com" not in str(raised.value) and fake.api_key not in str(raised.value)
    assert fake.call_count() == QUICK["attempts"]
    assert fake.members(segment) == set()
    with pytest.raises(DestinationUnavailableError):
        list(client.members(segment))
    assert fake.invalid == []


def test_a_retry_after_longer_than_allowed_stops_at_once(fake):
    fake.create_list("S", list_id="S1")
    client = KlaviyoClient(fake.api_key, base_url=fake.base_url, max_wait=2, **QUICK)
    fake.fail_next(1, status=429, retry_after=60)
    with pytest.raises(DestinationUnavailableError):
        client.push([Push("ann@example.com", add=frozenset({"S1"}))])
    assert fake.call_count() == 1


def test_a_bad_key_raises_destination_unavailable(fake):
    client = KlaviyoClient("pk_wrong", base_url=fake.base_url, **QUICK)
    with pytest.raises(DestinationUnavailableError) as raised:
        client.push([Push("ann@example.com", set={"x": 1})])
    assert "pk_wrong" not in str(raised.value) and "pk_wrong" not in repr(client)
    assert fake.call_count() == 1


def test_a_bad_email_in_a_job_fails_alone(fake, client):
    segment = fake.create_list("S")
    good = emails("g", 50)
    pushes = [Push(e, add=frozenset({segment}), set={"n": 1}) for e in good]
    pushes.insert(20, Push("not an email", add=frozenset({segment}), set={"n": 1}))
    pushes.insert(40, Push("also@bad", set={"n": 2}))
    pushes.append(Push("props@example.com", set={"n": 2}))
    result = client.push(pushes)
    assert set(result.failed) == {"not an email", "also@bad"}
    assert "not a valid email" in result.failed["not an email"]
    assert "not an email" not in result.failed["not an email"]  # the email is the key, not in the reason
    assert fake.members(segment) == set(good)
    assert fake.profile_by_email("g49@example.com")["properties"] == {"n": 1}
    assert fake.profile_by_email("props@example.com")["properties"] == {"n": 2}
    assert fake.profile_by_email("also@bad") is None
    assert result.calls == 4  # each job refused once, then sent without its bad profile
    assert fake.invalid == []


def test_without_pointers_the_bad_profiles_are_found_by_halves(fake, client):
    fake.error_pointers = False
    segment = fake.create_list("S")
    good = emails("g", 300)
    pushes = [Push(e, add=frozenset({segment})) for e in good]
    pushes[77] = Push("bad-one", add=frozenset({segment}))
    pushes[211] = Push("bad two@example.com", add=frozenset({segment}))
    result = client.push(pushes)
    assert set(result.failed) == {"bad-one", "bad two@example.com"}
    assert fake.members(segment) == set(good) - {"g77@example.com", "g211@example.com"}
    assert result.calls <= 1 + 2 * 2 * 9  # two bad profiles among 300: two paths of halves
    assert fake.invalid == []


def test_a_list_that_does_not_exist_fails_its_profiles_but_not_the_others(fake, client):
    segment = fake.create_list("S")
    result = client.push([Push("a@example.com", add=frozenset({"GONE"})),
                          Push("b@example.com", add=frozenset({"GONE"})),
                          Push("c@example.com", add=frozenset({segment}))])
    assert set(result.failed) == {"a@example.com", "b@example.com"}
    assert "GONE" in result.failed["a@example.com"]
    assert result.calls == 2  # the refusal points at the request itself: no halving
    assert fake.members(segment) == {"c@example.com"}
    assert fake.invalid == []


def test_a_stale_id_is_looked_up_again(fake, client):
    segment = fake.create_list("S")
    client.push([Push(e, add=frozenset({segment})) for e in emails("m", 2)])
    real = ids_of(fake, emails("m", 2))
    result = client.push([Push("m0@example.com", remove=frozenset({segment}), esp_id="01STALE0000000000000000000"),
                          Push("m1@example.com", remove=frozenset({segment}), esp_id=real["m1@example.com"])])
    assert result.failed == {}
    assert result.learned_ids["m0@example.com"] == real["m0@example.com"]
    assert fake.members(segment) == set()
    assert result.calls == 3  # refused removal, lookup, removal
    assert fake.invalid == []


def test_a_profile_over_100_kb_is_failed_without_being_sent(fake, client):
    result = client.push([Push("big@example.com", set={"blob": "x" * 120_000}), Push("ok@example.com", set={"x": 1})])
    assert set(result.failed) == {"big@example.com"}
    assert result.calls == 1
    assert fake.profile_by_email("big@example.com") is None
    assert fake.profile_by_email("ok@example.com")["properties"] == {"x": 1}


def test_jobs_are_chunked_by_size_and_count_and_removals_by_a_thousand(fake, client):
    segment = fake.create_list("S")
    # 2,000 profiles of 3 KB: 6 MB, over the 5 MB a job may carry
    big = client.push([Push(e, add=frozenset({segment}), set={"notes": "n" * 3000}) for e in emails("s", 2000)])
    assert big.failed == {} and big.calls == 2
    assert [c.status for c in fake.calls] == [202, 202]
    assert all(len(c.body) < 5_000_000 for c in fake.calls)
    assert len(fake.members(segment)) == 2000
    # 10,001 profiles: over the 10,000 a job may hold
    many = client.push([Push(e, set={"k": 1}) for e in emails("k", 10_001)])
    assert many.failed == {} and many.calls == 2
    # 1,500 removals: two requests of at most 1,000 ids
    ids = ids_of(fake, emails("s", 1500))
    removed = client.push([Push(e, remove=frozenset({segment}), esp_id=i) for e, i in ids.items()])
    assert removed.failed == {} and removed.calls == 2
    assert fake.members(segment) == set(emails("s", 2000)[1500:])
    assert {c.status for c in fake.calls} == {202, 204}
    assert fake.invalid == []


def test_lookups_take_a_hundred_emails_each(fake, client):
    segment = fake.create_list("S")
    client.push([Push(e, add=frozenset({segment})) for e in emails("m", 250)])
    before = fake.call_count()
    result = client.push([Push(e, remove=frozenset({segment})) for e in emails("m", 250)])
    assert result.failed == {} and len(result.learned_ids) == 250
    assert fake.call_count("GET", "/api/profiles") == 3
    assert result.calls == fake.call_count() - before == 4
    assert fake.members(segment) == set()
    assert fake.invalid == []


def test_never_a_subscription_and_suppression_at_klaviyo_is_never_undone(fake, client):
    a, b = fake.create_list("A"), fake.create_list("B")
    client.push([Push("ann@example.com", add=frozenset({a, b}), set={"tier": "gold"}),
                 Push("bob@example.com", add=frozenset({a}))])
    fake.suppress("ann@example.com")  # she unsubscribed from a campaign's link
    result = client.push([Push("ann@example.com", add=frozenset({a}), remove=frozenset({b}), set={"tier": "vip"}),
                          Push("bob@example.com", remove=frozenset({a})), Push("new@example.com", add=frozenset({b}))])
    assert result.failed == {}
    ann = fake.profile_by_email("ann@example.com")
    assert ann["suppressed"] is True and ann["properties"] == {"tier": "vip"}
    assert fake.profile_by_email("new@example.com")["suppressed"] is False  # nobody is subscribed either
    assert fake.members(a) == {"ann@example.com"} and fake.members(b) == {"new@example.com"}
    assert fake.calls and not [c for c in fake.calls if "subscription" in c.path or "suppression" in c.path]
    assert not [c for c in fake.calls if b"subscriptions" in c.body or b"consent" in c.body]
    assert fake.suppression_jobs == {}
    assert fake.invalid == []


def test_pushes_of_the_same_email_are_merged_the_later_winning(fake, client):
    a, b = fake.create_list("A"), fake.create_list("B")
    result = client.push([Push("ann@example.com", add=frozenset({a}), set={"x": 1, "y": 1}),
                          Push("ANN@example.com", add=frozenset({b}), set={"x": 2}),
                          Push("ann@example.com", remove=frozenset({a}))])
    assert result.failed == {}
    assert fake.members(a) == set() and fake.members(b) == {"ann@example.com"}
    assert fake.profile_by_email("ann@example.com")["properties"] == {"x": 2, "y": 1}


def test_members_pages_through_the_whole_list(fake, client):
    segment = fake.create_list("S")
    client.push([Push(e, add=frozenset({segment})) for e in emails("m", 250)])
    before = fake.call_count()
    members = list(client.members(segment))
    assert sorted(members) == sorted(ids_of(fake, emails("m", 250)).items())
    pages = fake.calls[before:]
    assert [(c.method, c.path) for c in pages] == [("GET", f"/api/lists/{segment}/profiles")] * 3
    assert all("page%5Bsize%5D=100" in c.query and "fields%5Bprofile%5D=email" in c.query for c in pages)
    assert list(client.members(fake.create_list("Empty"))) == []
    with pytest.raises(DestinationUnavailableError):
        list(client.members("GONE"))
    assert fake.invalid == []
