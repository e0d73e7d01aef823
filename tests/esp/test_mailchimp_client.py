"""The ESP sync's Mailchimp client (segmentation.infra.esp.mailchimp) against the fake Mailchimp.

Every test ends with the fake's state, ``fake.invalid == []`` (every request had Mailchimp's
documented shape) and ``fake.consent_violations() == []`` (nothing ever subscribed anyone)."""

from __future__ import annotations

import pytest
from segctl.espfakes.mailchimp import DEFAULT_LIST, FakeMailchimp
from segmentation.infra.esp.mailchimp import MailchimpClient
from segmentation.service.ports import DestinationUnavailableError, Push

LIST = DEFAULT_LIST
FAST = {"backoff_factor": 0.01, "backoff_max": 0.05}  # quick retries of 5xx


@pytest.fixture
def fake():
    with FakeMailchimp(lists={LIST: ["FNAME", "LNAME"]}) as fake:
        yield fake


def client(fake: FakeMailchimp, **options) -> MailchimpClient:
    return MailchimpClient(fake.api_key, LIST, base_url=fake.root_url, **{**FAST, **options})


def push(email: str, add=(), remove=(), **fields) -> Push:
    return Push(email, add=frozenset(add), remove=frozenset(remove), set=fields)


def assert_clean(fake: FakeMailchimp) -> None:
    assert fake.invalid == []
    assert fake.consent_violations() == []
    # no request ever carried a status; new members only ever got "transactional"
    assert {(key, value) for _, _, key, value in fake.statuses_sent} <= {("status_if_new", "transactional")}
    assert set(fake.new_member_statuses(LIST).values()) <= {"transactional"}


def calls_to(fake: FakeMailchimp, method: str, suffix: str) -> int:
    return sum(1 for m, path in fake.calls if m == method and path.endswith(suffix))


# -- configuration -------------------------------------------------------------------------------


def test_the_key_names_the_data_center():
    mc = MailchimpClient("0123456789abcdef0123456789abcdef-us21", LIST)
    assert mc._api.base_url == "https://us21.api.mailchimp.com/3.0"
    with pytest.raises(ValueError, match="data center"):
        MailchimpClient("0123456789abcdef0123456789abcdef", LIST)
    with pytest.raises(ValueError, match="10"):
        MailchimpClient("0123456789abcdef0123456789abcdef-us21", LIST, pool_size=20)


def test_an_empty_push_sends_nothing(fake):
    result = client(fake).push([])
    assert (result.calls, result.failed, fake.calls) == (0, {}, [])


# -- members, merge fields, tags -----------------------------------------------------------------


def test_add_with_merge_fields_creates_a_transactional_member_with_the_tag_and_fields(fake):
    result = client(fake).push([push("Ann@Example.com", add={"Recent Buyers"}, FNAME="Ann", AOV=12.5)])

    assert result.failed == {}
    assert fake.members(LIST) == {
        "Ann@Example.com": {
            "status": "transactional",
            "merge_fields": {"FNAME": "Ann", "AOV": 12.5},
            "tags": {"Recent Buyers"},
        }
    }
    assert fake.new_member_statuses(LIST) == {"Ann@Example.com": "transactional"}
    assert result.calls == len(fake.requests)
    # the missing merge field was created once; one member goes as a direct PUT, not a batch
    assert calls_to(fake, "POST", "/merge-fields") == 1
    assert calls_to(fake, "POST", "/batches") == 0
    assert_clean(fake)


def test_existing_unsubscribed_and_cleaned_members_keep_their_status(fake):
    fake.add_member(LIST, "u@example.com", status="unsubscribed", merge_fields={"FNAME": "U"})
    fake.add_member(LIST, "c@example.com", status="cleaned")
    fake.add_member(LIST, "s@example.com", status="subscribed", tags=["Old"])
    pushes = [push(e, add={"VIP"}, remove={"Old"}, LNAME="L") for e in ("u@example.com", "c@example.com")]
    pushes += [push("s@example.com", add={"VIP"}, remove={"Old"}, LNAME="S")]
    pushes += [push(f"new{i}@example.com", add={"VIP"}) for i in range(3)]  # 6 pushes: a batch

    result = client(fake).push(pushes)

    members = fake.members(LIST)
    assert result.failed == {}
    assert members["u@example.com"] == {"status": "unsubscribed", "merge_fields": {"FNAME": "U", "LNAME": "L"},
                                        "tags": {"VIP"}}
    assert members["c@example.com"] == {"status": "cleaned", "merge_fields": {"LNAME": "L"}, "tags": {"VIP"}}
    assert members["s@example.com"] == {"status": "subscribed", "merge_fields": {"LNAME": "S"}, "tags": {"VIP"}}
    assert fake.new_member_statuses(LIST) == {f"new{i}@example.com": "transactional" for i in range(3)}
    assert calls_to(fake, "POST", "/batches") == 1
    assert_clean(fake)


def test_remove_drops_the_tag_and_removing_someone_untagged_or_absent_is_no_failure(fake):
    fake.add_member(LIST, "a@example.com", status="transactional", tags=["At-Risk", "Keep"])
    fake.add_member(LIST, "b@example.com", status="transactional")

    result = client(fake).push([
        push("a@example.com", remove={"At-Risk"}),
        push("b@example.com", remove={"At-Risk"}),  # a member without the tag
        push("ghost@example.com", remove={"At-Risk"}),  # not in the audience at all
        push("a@example.com", remove={"Never Created"}),  # a tag that does not exist
    ])

    assert result.failed == {}
    assert fake.tag_members(LIST, "At-Risk") == set()
    assert fake.members(LIST)["a@example.com"]["tags"] == {"Keep"}
    assert set(fake.tags(LIST)) == {"At-Risk", "Keep"}  # removing never creates a tag
    assert set(fake.members(LIST)) == {"a@example.com", "b@example.com"}  # removing never creates a member
    assert calls_to(fake, "PUT", "") == calls_to(fake, "POST", "/batches") == 0
    assert_clean(fake)


def test_a_new_tag_is_created_and_an_existing_one_matched_case_insensitively(fake):
    fake.add_member(LIST, "old@example.com", status="transactional", tags=["vip"])
    mc = client(fake)

    result = mc.push([push("a@example.com", add={"Brand New", "VIP"})])

    assert result.failed == {}
    assert set(fake.tags(LIST)) == {"vip", "Brand New"}
    assert fake.members(LIST)["a@example.com"]["tags"] == {"vip", "Brand New"}
    # the tag ids are cached: a second push lists no tags and creates none
    before = len(fake.calls)
    mc.push([push("b@example.com", add={"Brand New"})])
    assert [c for c in fake.calls[before:] if c[1].endswith("/segments")] == []
    assert fake.tag_members(LIST, "Brand New") == {"a@example.com", "b@example.com"}
    assert_clean(fake)


def test_a_tag_created_elsewhere_after_the_cache_was_filled_is_still_removed(fake):
    mc = client(fake)
    mc.push([push("a@example.com", add={"One"})])  # fills the tag cache
    fake.add_member(LIST, "b@example.com", status="transactional", tags=["Two"])  # another writer's tag

    assert mc.push([push("b@example.com", remove={"Two"})]).failed == {}
    assert fake.tag_members(LIST, "Two") == set()
    assert_clean(fake)


def test_merge_fields_are_read_and_created_once_per_client(fake):
    mc = client(fake)
    mc.push([push("a@example.com", SCORE=1, FNAME="A")])
    mc.push([push("b@example.com", SCORE=2, PREFCAT="shoes")])
    mc.push([push("c@example.com", SCORE=3, PREFCAT="", LNAME=None, VIP=True)])

    assert calls_to(fake, "GET", "/merge-fields") == 1
    assert calls_to(fake, "POST", "/merge-fields") == 3  # SCORE, PREFCAT, VIP
    members = fake.members(LIST)
    assert members["b@example.com"]["merge_fields"] == {"SCORE": 2, "PREFCAT": "shoes"}
    assert members["c@example.com"]["merge_fields"] == {"SCORE": 3, "PREFCAT": "", "LNAME": "", "VIP": "true"}
    assert_clean(fake)


# -- bulk ----------------------------------------------------------------------------------------


def thousand_pushes() -> list[Push]:
    pushes = [push(f"a{i}@example.com", add={"A"}, FNAME=f"A{i}", SCORE=i) for i in range(600)]
    pushes += [push(f"f{i}@example.com", SCORE=i) for i in range(300)]
    pushes += [push(f"b{i}@example.com", remove={"B"}) for i in range(100)]
    return pushes


def assert_thousand_state(fake: FakeMailchimp) -> None:
    members = fake.members(LIST)
    assert len(members) == 1000  # 600 + 300 created, the 100 tagged B were there
    assert fake.tag_members(LIST, "A") == {f"a{i}@example.com" for i in range(600)}
    assert fake.tag_members(LIST, "B") == set()
    assert all(members[f"a{i}@example.com"]["merge_fields"] == {"FNAME": f"A{i}", "SCORE": i} for i in range(600))
    assert all(members[f"f{i}@example.com"] == {"status": "transactional", "merge_fields": {"SCORE": i},
                                                "tags": set()} for i in range(300))
    assert all(members[f"b{i}@example.com"]["status"] == "unsubscribed" for i in range(100))


def test_a_thousand_pushes_take_a_handful_of_calls_and_a_replay_changes_nothing():
    with FakeMailchimp(lists={LIST: ["FNAME"]}, latency=0.002) as fake:
        for i in range(100):
            fake.add_member(LIST, f"b{i}@example.com", status="unsubscribed", tags=["B"])
        mc = client(fake)

        first = mc.push(thousand_pushes())
        assert first.failed == {}
        assert first.calls == len(fake.requests) <= 10
        # merge fields: GET + POST SCORE; members: 1 batch of 900 PUTs; tags: GET, POST A,
        # A's 600 adds in 2 requests (500 at most), B's 100 removals in 1
        assert first.calls == 8
        assert_thousand_state(fake)

        before = len(fake.requests)
        replay = mc.push(thousand_pushes())
        assert replay.failed == {}
        assert replay.calls == len(fake.requests) - before == 4  # caches warm: the batch and 3 tag updates
        assert_thousand_state(fake)
        assert fake.peak_concurrency <= 10
        assert_clean(fake)


def test_segment_updates_carry_at_most_500_emails_each(fake):
    fake.add_member(LIST, "x@example.com", status="transactional", tags=["T"])
    for i in range(1200):
        fake.add_member(LIST, f"r{i}@example.com", status="transactional", tags=["T"])
    pushes = [push(f"r{i}@example.com", remove={"T"}) for i in range(1200)]

    result = client(fake).push(pushes)

    assert result.failed == {}
    assert calls_to(fake, "POST", f"/segments/{fake.tags(LIST)['T']}") == 3
    assert fake.tag_members(LIST, "T") == {"x@example.com"}
    assert_clean(fake)


# -- asynchrony, faults, refusals ----------------------------------------------------------------


def test_the_client_waits_for_an_asynchronous_batch_before_tagging():
    sleeps: list[float] = []
    with FakeMailchimp(lists={LIST: ["FNAME"]}, batch_polls=3) as fake:
        result = client(fake, sleep=sleeps.append).push(
            [push(f"m{i}@example.com", add={"T"}, FNAME=str(i)) for i in range(10)])

        assert result.failed == {}
        assert sum(1 for m, p in fake.calls if m == "GET" and "/batches/" in p) == 3
        assert sleeps == sorted(sleeps) and sleeps[0] < sleeps[-1]  # growing pauses
        assert fake.tag_members(LIST, "T") == {f"m{i}@example.com" for i in range(10)}
        assert_clean(fake)


def test_a_batch_that_never_finishes_makes_the_destination_unavailable():
    with FakeMailchimp(lists={LIST: ["FNAME"]}, batch_polls=10**6) as fake:
        mc = client(fake, batch_wait=0.6)
        with pytest.raises(DestinationUnavailableError, match="not finished"):
            mc.push([push(f"m{i}@example.com", add={"T"}) for i in range(10)])
        assert fake.members(LIST) == {}
        assert fake.tags(LIST) == {}  # the tags step never runs before the members exist
        assert_clean(fake)


def test_429_with_retry_after_and_5xx_bursts_lose_nothing(fake):
    mc = client(fake)
    mc.push([push("warm@example.com", add={"A"}, SCORE=0)])  # caches warm: the faults hit the bulk calls
    fake.add_member(LIST, "gone@example.com", status="transactional", tags=["A"])
    pushes = [push(f"m{i}@example.com", add={"A"}, SCORE=i) for i in range(20)]
    pushes.append(push("gone@example.com", remove={"A"}))

    fake.fail_next(1, status=429, retry_after=1)
    fake.fail_next(2, status=503)
    before = len(fake.requests)
    result = mc.push(pushes)

    assert result.failed == {}
    assert result.calls == len(fake.requests) - before == 4 + 1  # the batch 4 times, the tag update once
    assert [r.status for r in fake.requests[before:]] == [429, 503, 503, 200, 200]
    assert fake.tag_members(LIST, "A") == {"warm@example.com"} | {f"m{i}@example.com" for i in range(20)}
    assert fake.members(LIST)["m7@example.com"]["merge_fields"] == {"SCORE": 7}

    fake.fail_next(3, status=500)  # a burst on the tag update itself
    assert mc.push([push(f"m{i}@example.com", remove={"A"}) for i in range(20)]).failed == {}
    assert fake.tag_members(LIST, "A") == {"warm@example.com"}
    assert_clean(fake)


def test_a_5xx_that_never_ends_makes_the_destination_unavailable(fake):
    fake.fail_next(100, status=503)
    with pytest.raises(DestinationUnavailableError):
        client(fake, attempts=3).push([push("a@example.com", add={"A"}, FNAME="A")])
    assert [r.status for r in fake.requests] == [503, 503, 503]
    assert fake.members(LIST) == {}
    assert_clean(fake)


def test_a_bad_key_makes_the_destination_unavailable(fake):
    mc = MailchimpClient("f" * 32 + "-us21", LIST, base_url=fake.root_url)
    with pytest.raises(DestinationUnavailableError, match="401"):
        mc.push([push("a@example.com", add={"A"})])
    assert fake.members(LIST) == {}


@pytest.mark.parametrize("good", [1, 9], ids=["direct PUTs", "batch"])
def test_a_refused_address_fails_alone(fake, good):
    pushes = [push(f"m{i}@example.com", add={"T"}, FNAME=str(i)) for i in range(good)]
    pushes.insert(len(pushes) // 2, push("not-an-address", add={"T"}, FNAME="x"))

    result = client(fake).push(pushes)

    assert list(result.failed) == ["not-an-address"]
    assert "looks fake or invalid" in result.failed["not-an-address"]
    assert "not-an-address" not in result.failed["not-an-address"]  # reasons may be logged: no address
    assert fake.tag_members(LIST, "T") == {f"m{i}@example.com" for i in range(good)}
    assert set(fake.members(LIST)) == {f"m{i}@example.com" for i in range(good)}
    assert calls_to(fake, "POST", "/batches") == (1 if good > 3 else 0)
    assert_clean(fake)


# -- members() -----------------------------------------------------------------------------------


def test_members_pages_through_a_tag_including_every_status(fake):
    statuses = ("transactional", "subscribed", "unsubscribed", "cleaned", "pending")
    for i in range(2345):
        fake.add_member(LIST, f"M{i}@Example.com", status=statuses[i % 5], tags=["Big"])
    fake.add_member(LIST, "other@example.com", status="transactional", tags=["Small"])

    got = list(client(fake).members("Big"))

    assert len(got) == 2345
    assert set(got) == {(f"m{i}@example.com", None) for i in range(2345)}
    pages = [r for r in fake.requests if r.path.endswith("/members") and r.method == "GET"]
    assert len(pages) == 3
    assert all("count=1000" in r.query for r in pages)
    assert_clean(fake)


def test_members_of_a_tag_that_does_not_exist_is_empty(fake):
    assert list(client(fake).members("Nobody")) == []
    assert fake.tags(LIST) == {}
    assert_clean(fake)
