"""The ESP sync's pure core (issue 12): desired state per (profile, destination), coalescing a
batch of changes, and the diff to send. Consent is sacred; desired state, not deltas."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from segmentation.destinations.config import load_destinations
from segmentation.destinations.desired import (
    NO_CONSENT,
    Change,
    DesiredState,
    Operations,
    apply,
    changes_for,
    coalesce,
    desired_state,
    diff,
)
from segmentation.domain.catalog import load_catalog
from segmentation.domain.profile import ConsentRecord, Profile

# the contract's example (docs/destinations.md)
EXAMPLE = """\
version: 1
destinations:
  - id: klaviyo-main
    type: klaviyo
    segments:
      recent-buyers: {list: "XyZ123"}
      at-risk: {list: "AbC456"}
    properties:
      PreferredCategory: preferred_category
      LastPurchaseDate: last_order_at
      AverageOrderValue: average_order_value
      Segments: segments
  - id: mailchimp-main
    type: mailchimp
    list: "a1b2c3d4e5"
    segments:
      recent-buyers: {tag: "Recent Buyers"}
      at-risk: {tag: "At-Risk"}
    merge_fields:
      PREFCAT: preferred_category
      LASTORDER: last_order_at
      AOV: average_order_value
  - id: hooks
    type: webhook
    url: "https://example.com/segments"
"""

MAILCHIMP_SEGMENTS = """\
version: 1
destinations:
  - id: mailchimp-segs
    type: mailchimp
    list: "a1b2c3d4e5"
    segments:
      recent-buyers: {tag: "Recent Buyers"}
    merge_fields:
      SEGS: segments
      ORDERS: order_count
      OPENRATE: email_open_rate_30d
"""

CATALOG = load_catalog()
DESTINATIONS = load_destinations(EXAMPLE, CATALOG, "destinations.yaml")
KLAVIYO = DESTINATIONS.get("klaviyo-main")
MAILCHIMP = DESTINATIONS.get("mailchimp-main")
HOOKS = DESTINATIONS.get("hooks")
MAILCHIMP_SEGS = load_destinations(MAILCHIMP_SEGMENTS, CATALOG, "destinations.yaml").get("mailchimp-segs")
ESPS = [KLAVIYO, MAILCHIMP, MAILCHIMP_SEGS]

TRAITS = {"preferred_category": "shoes", "last_order_at": "2026-11-20T10:00:00Z", "average_order_value": "42.50",
          "order_count": 3, "email_open_rate_30d": None}


def profile(segments=(), email="ana@example.com", consent=None, traits=None) -> Profile:
    p = Profile(profile_id="p1", email=email, segments=sorted(segments), traits=dict(TRAITS if traits is None else traits))
    if consent is not None:
        p.email_consent = ConsentRecord(state=consent, updated=1, since=1)
    return p


# -- the contract example ---------------------------------------------------------------------------


def test_enter_puts_the_profile_in_the_list_with_its_properties():
    d = desired_state(profile(["recent-buyers"]), KLAVIYO, catalog=CATALOG)
    assert d.email == "ana@example.com" and d.targets == {"XyZ123"} and not d.remove_everywhere
    assert d.properties == {"PreferredCategory": "shoes", "LastPurchaseDate": "2026-11-20T10:00:00Z",
                            "AverageOrderValue": 42.5, "Segments": ["recent-buyers"]}
    ops = diff(None, d)
    assert ops.add == {"XyZ123"} and ops.remove == {"AbC456"} and ops.set == d.properties

    m = desired_state(profile(["recent-buyers"]), MAILCHIMP, catalog=CATALOG)
    assert m.targets == {"Recent Buyers"}
    assert m.properties == {"PREFCAT": "shoes", "LASTORDER": "2026-11-20T10:00:00Z", "AOV": 42.5}


def test_exit_removes_the_profile_from_the_list():
    entered = desired_state(profile(["recent-buyers"]), KLAVIYO)
    exited = desired_state(profile([]), KLAVIYO)
    ops = diff(entered, exited)
    assert ops.add == frozenset() and ops.remove == {"XyZ123"} and ops.set == {"Segments": []}
    assert apply(entered, ops) == exited
    tags = diff(desired_state(profile(["recent-buyers", "at-risk"]), MAILCHIMP),
                desired_state(profile(["at-risk"]), MAILCHIMP))
    assert tags.remove == {"Recent Buyers"} and tags.add == frozenset() and tags.set == {}


@pytest.mark.parametrize("how", ["segment", *sorted(NO_CONSENT)])
@pytest.mark.parametrize("destination", ESPS, ids=lambda d: d.id)
def test_a_suppressed_profile_is_removed_from_all_targets_and_never_re_added(how, destination):
    kwargs = {"consent": how} if how != "segment" else {}
    segments = ["recent-buyers", "at-risk"] + (["suppressed"] if how == "segment" else [])
    was = desired_state(profile(["recent-buyers", "at-risk"]), destination)
    now = desired_state(profile(segments, **kwargs), destination)
    assert now.targets == frozenset() and now.properties == {} and now.email == "ana@example.com"
    ops = diff(was, now)
    assert ops.remove == was.targets and ops.add == frozenset() and ops.set == {}
    assert diff(None, now).remove == now.managed and diff(None, now).add == frozenset()
    # still suppressed, whatever else changes: nothing is ever added back
    later = desired_state(profile([*segments, "recent-buyers"], traits={"preferred_category": "bags"}, **kwargs),
                          destination)
    assert diff(apply(was, ops), later).empty
    assert not diff(None, later).add


def test_a_subscribed_consent_state_does_not_suppress():
    d = desired_state(profile(["recent-buyers"], consent="subscribed"), KLAVIYO)
    assert d.targets == {"XyZ123"}


def test_an_erased_profile_is_removed_everywhere():
    was = desired_state(profile(["recent-buyers"]), KLAVIYO)
    gone = desired_state(None, KLAVIYO, last_email="ana@example.com")
    assert gone.remove_everywhere and gone.targets == frozenset() and gone.properties == {}
    ops = diff(was, gone)
    assert ops.remove == {"XyZ123", "AbC456"} and ops.remove_everywhere and not ops.add and not ops.set
    assert diff(None, gone).remove == {"XyZ123", "AbC456"}
    assert apply(was, ops) == gone and diff(gone, gone).empty
    assert desired_state(None, MAILCHIMP, last_email="ana@example.com").managed == {"Recent Buyers", "At-Risk"}
    # an erased profile never synced (no email known): nothing to do
    assert diff(None, desired_state(None, KLAVIYO)).empty


def test_a_profile_without_an_email_syncs_nothing():
    d = desired_state(profile(["recent-buyers"], email=None), KLAVIYO)
    assert d.email is None and d.targets == frozenset() and d.properties == {}
    assert diff(None, d).empty and diff(d, d).empty
    assert diff(desired_state(profile(["recent-buyers"]), KLAVIYO), d) == Operations(email=None)


def test_a_webhook_destination_has_no_state():
    d = desired_state(profile(["recent-buyers"]), HOOKS)
    assert d.targets == frozenset() and d.properties == {} and diff(None, d).empty


def test_the_segments_property_for_klaviyo_is_the_sorted_list_for_mailchimp_a_comma_separated_string():
    segments = ["recent-buyers", "at-risk", "category-browsers:shoes"]
    k = desired_state(profile(segments), KLAVIYO)
    assert k.properties["Segments"] == ["at-risk", "category-browsers:shoes", "recent-buyers"]
    m = desired_state(profile(segments), MAILCHIMP_SEGS)
    assert m.properties["SEGS"] == "at-risk,category-browsers:shoes,recent-buyers"
    assert desired_state(profile([]), MAILCHIMP_SEGS).properties["SEGS"] == ""
    assert desired_state(profile([]), KLAVIYO).properties["Segments"] == []


def test_values_are_rendered_as_each_esp_expects():
    traits = {"preferred_category": None, "last_order_at": None, "average_order_value": None,
              "order_count": 3, "email_open_rate_30d": 0.25}
    k = desired_state(profile(traits=traits), KLAVIYO, catalog=CATALOG)
    assert k.properties["PreferredCategory"] is None and k.properties["AverageOrderValue"] is None
    m = desired_state(profile(traits=traits), MAILCHIMP_SEGS, catalog=CATALOG)
    assert m.properties == {"SEGS": "", "ORDERS": 3, "OPENRATE": 0.25}
    assert desired_state(profile(traits={"average_order_value": "40.00"}), MAILCHIMP, catalog=CATALOG
                         ).properties["AOV"] == 40
    assert desired_state(profile(traits={"average_order_value": Decimal("1.5")}), KLAVIYO
                         ).properties["AverageOrderValue"] == 1.5
    # a trait missing from the profile (not evaluated yet) is empty, not an error
    assert desired_state(profile(traits={}), MAILCHIMP).properties == {"PREFCAT": "", "LASTORDER": "", "AOV": ""}


def test_the_same_desired_state_twice_sends_nothing_the_second_time():
    d = desired_state(profile(["at-risk"]), KLAVIYO, catalog=CATALOG)
    first = diff(None, d)
    assert first
    assert not diff(apply(None, first), d)
    only_trait = desired_state(profile(["at-risk"], traits={**TRAITS, "preferred_category": "bags"}), KLAVIYO,
                               catalog=CATALOG)
    ops = diff(d, only_trait)
    assert ops.set == {"PreferredCategory": "bags"} and not ops.add and not ops.remove


def test_enter_then_exit_in_one_batch_yields_only_the_final_state():
    entered = Change("p1", "klaviyo-main", version=5, at=100, kind="entered")
    exited = Change("p1", "klaviyo-main", version=6, at=101, kind="exited")
    other = Change("p2", "klaviyo-main", version=1, at=50, kind="traits")
    assert coalesce([exited, entered, entered, other]) == {("p1", "klaviyo-main"): exited,
                                                           ("p2", "klaviyo-main"): other}
    # same version: the later time wins
    late = Change("p1", "klaviyo-main", version=6, at=200, kind="entered")
    assert coalesce([late, exited])[("p1", "klaviyo-main")] == late


def test_changes_for_finds_the_destinations_a_change_concerns():
    dests = DESTINATIONS.destinations
    assert [c.destination_id for c in changes_for("p1", "recent-buyers", "entered", 3, 10, dests)] == [
        "klaviyo-main", "mailchimp-main"]
    # Klaviyo sends the segment ids as a property: every membership change concerns it
    assert [c.destination_id for c in changes_for("p1", "new-subscribers", "entered", 3, 10, dests)] == ["klaviyo-main"]
    assert [c.destination_id for c in changes_for("p1", None, "traits", 3, 10, dests)] == [
        "klaviyo-main", "mailchimp-main"]
    # suppression empties every destination's targets, mapped or not
    assert [c.destination_id for c in changes_for("p1", "suppressed", "entered", 3, 10, dests)] == [
        "klaviyo-main", "mailchimp-main"]
    assert changes_for("p1", "inactive", "entered", 3, 10, [MAILCHIMP]) == []


# -- properties ---------------------------------------------------------------------------------------

SEGMENT_IDS = ["recent-buyers", "at-risk", "suppressed", "new-subscribers", "category-browsers:shoes"]
trait_values = st.one_of(st.none(), st.integers(-10, 10_000), st.floats(0, 1, allow_nan=False),
                         st.sampled_from(["shoes", "bags", "2026-01-01T00:00:00Z", "12.50"]))
profiles = st.builds(
    profile,
    segments=st.lists(st.sampled_from(SEGMENT_IDS), unique=True),
    email=st.sampled_from(["ana@example.com", "bo@example.com", None]),
    consent=st.sampled_from([None, "subscribed", "not_subscribed", "pending", *sorted(NO_CONSENT)]),
    traits=st.dictionaries(st.sampled_from(sorted(TRAITS)), trait_values),
)
maybe_profiles = st.one_of(profiles, st.none())
destinations = st.sampled_from(ESPS)


@st.composite
def states(draw, destination):
    p = draw(maybe_profiles)
    last = draw(st.sampled_from(["ana@example.com", "bo@example.com", None]))
    return desired_state(p, destination, last_email=last, catalog=draw(st.sampled_from([CATALOG, None])))


changes = st.builds(Change, profile_id=st.sampled_from(["p1", "p2", "p3"]),
                    destination_id=st.sampled_from(["klaviyo-main", "mailchimp-main"]),
                    version=st.integers(0, 5), at=st.integers(0, 5),
                    kind=st.sampled_from(["entered", "exited", "traits", "erased"]))


@given(st.lists(changes, max_size=12), st.data())
def test_coalesce_is_order_and_duplicate_insensitive(batch, data):
    shuffled = data.draw(st.permutations(batch))
    dupes = data.draw(st.lists(st.sampled_from(batch), max_size=8)) if batch else []
    assert coalesce(batch) == coalesce([*shuffled, *dupes]) == coalesce([*dupes, *reversed(batch)])
    for (pid, did), change in coalesce(batch).items():
        same = [c for c in batch if (c.profile_id, c.destination_id) == (pid, did)]
        assert (change.version, change.at) == max((c.version, c.at) for c in same)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_applying_the_diff_yields_the_desired_state_and_a_second_diff_is_empty(data):
    destination = data.draw(destinations)
    desired = data.draw(states(destination))
    current = data.draw(st.one_of(st.none(), states(destination)))
    ops = diff(current, desired)
    assert not ops.add & ops.remove
    result = apply(current, ops, desired.managed)
    assert diff(desired, desired).empty
    assert diff(result, desired).empty  # idempotent: the same desired state again sends nothing
    if desired.email is None:
        assert ops.empty
        return
    assert result.email == desired.email and result.targets == desired.targets
    assert result.remove_everywhere == desired.remove_everywhere
    assert {k: result.properties[k] for k in desired.properties} == dict(desired.properties)
    if desired.properties or desired.remove_everywhere or current is None or current.email != desired.email:
        # a synced profile asserts every property of the destination: the state is exactly the desired one
        assert result == desired
    # only what changed is set
    if current is not None and current.email == desired.email and not current.remove_everywhere:
        assert all(current.properties.get(k, object()) != v for k, v in ops.set.items())


@given(profiles, destinations, st.sampled_from(["segment", *sorted(NO_CONSENT)]))
def test_a_suppressed_profile_is_in_no_target(p, destination, how):
    if how == "segment":
        p.segments = sorted({*p.segments, "suppressed"})
    else:
        p.email_consent = ConsentRecord(state=how, updated=1, since=1)
    d = desired_state(p, destination)
    assert d.targets == frozenset() and d.properties == {}
    assert not diff(None, d).add
    assert isinstance(d, DesiredState)


def test_a_new_address_gets_the_whole_state_asserted():
    old = desired_state(profile(["recent-buyers"]), KLAVIYO)
    new = desired_state(profile(["recent-buyers"], email="ana@new.example"), KLAVIYO)
    ops = diff(old, new)
    assert ops.email == "ana@new.example" and ops.add == {"XyZ123"} and ops.remove == {"AbC456"}
    assert ops.set == new.properties and apply(old, ops) == new
