"""Catalog files are validated when loaded: a malformed definition is a CatalogError that names the
file, the segment and the offending field, so whoever edits the YAML can find and fix the mistake.
A valid custom catalog with other thresholds changes evaluation accordingly.
"""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from segmentation.domain.catalog import DEFAULT_CATALOG, Catalog, CatalogError, load_catalog
from segmentation.domain.evaluation import CatalogEvaluator, default_evaluator
from segmentation.domain.events import (
    BrowseProperties,
    CustomerEvent,
    EmailProperties,
    EventType,
    Identity,
    OrderProperties,
)
from segmentation.domain.profile import Profile

DAY = 86400
T0 = 1_715_696_551
SOURCE = "bad.yaml"


def catalog(segments: str, traits: str = "") -> str:
    """A catalog file with the given ``segments:`` body (and optional ``traits:`` body), indented for YAML."""
    text = "version: 1\n"
    if traits:
        text += "traits:\n" + textwrap.indent(textwrap.dedent(traits), "  ")
    return text + "segments:\n" + textwrap.indent(textwrap.dedent(segments), "  ")


def segment(sid: str, when: str, extra: str = "") -> str:
    return f"{sid}:\n  name: A segment\n  description: For the test.\n{extra}  when: {when}\n"


# (case id, catalog text, segment id the message must name, words naming the offending field)
MALFORMED = [
    ("unknown-signal", catalog(segment("bad-seg", "{event: {signal: order_palced}}")),
     "bad-seg", ["when.event.signal"]),
    ("unknown-signal-in-list", catalog(segment("bad-seg", "{event: {signal: [product_viewed, prodcut_viewed], within: 1d}}")),
     "bad-seg", ["when.event.signal"]),
    ("duration-with-words", catalog(segment("bad-seg", "{event: {signal: order_placed, within: 14 days}}")),
     "bad-seg", ["when.event.within", "14 days"]),
    ("zero-duration", catalog(segment("bad-seg", "{event: {signal: order_placed, within: 0d}}")),
     "bad-seg", ["when.event.within", "0d"]),
    ("duration-deep-in-a-tree",
     catalog(segment("bad-seg", "{all: [{event: {signal: order_placed}}, {not: {event: {signal: order_placed, within: 2 weeks}}}]}")),
     "bad-seg", ["when.all.1.not.event.within", "2 weeks"]),
    ("bad-comparison", catalog(segment("bad-seg", "{event: {signal: order_placed, count: '>> 3'}}")),
     "bad-seg", ["when.event.count", ">> 3"]),
    ("comparison-without-operator", catalog(segment("bad-seg", "{event: {signal: order_placed, count: 3}}")),
     "bad-seg", ["when.event.count"]),
    ("unknown-condition-key", catalog(segment("bad-seg", "{evnt: {signal: order_placed}}")),
     "bad-seg", ["when.evnt"]),
    ("unknown-event-option", catalog(segment("bad-seg", "{event: {signal: order_placed, withn: 14d}}")),
     "bad-seg", ["when.event.withn"]),
    ("two-condition-keys", catalog(segment("bad-seg", "{event: {signal: order_placed}, last: {signal: activity, more_than: 1d}}")),
     "bad-seg", ["when", "event", "last"]),
    ("where-on-a-property-the-signal-lacks",
     catalog(segment("bad-seg", "{event: {signal: order_placed, where: {category: shoes}}}")),
     "bad-seg", ["when.event", "order_placed", "category"]),
    ("where-completed-on-a-view",
     catalog(segment("bad-seg", "{event: {signal: product_viewed, where: {completed: false}, within: 1d}}")),
     "bad-seg", ["when.event", "product_viewed", "completed"]),
    ("older-than-not-shorter-than-within",
     catalog(segment("bad-seg", "{event: {signal: checkout_started, older_than: 7d, within: 7d}}")),
     "bad-seg", ["when.event", "older_than", "within"]),
    ("more-than-longer-than-at-most",
     catalog(segment("bad-seg", "{last: {signal: activity, more_than: 60d, at_most: 30d}}")),
     "bad-seg", ["when.last", "more_than", "at_most"]),
    ("more-than-equal-to-at-most",
     catalog(segment("bad-seg", "{first: {signal: order_placed, more_than: 30d, at_most: 720h}}")),
     "bad-seg", ["when.first", "more_than", "at_most"]),
    ("recency-without-limits", catalog(segment("bad-seg", "{last: {signal: activity}}")),
     "bad-seg", ["when.last", "more_than", "at_most"]),
    ("counting-activity", catalog(segment("bad-seg", "{event: {signal: activity, within: 30d}}")),
     "bad-seg", ["when.event", "activity"]),
    ("unknown-segment-reference", catalog(segment("bad-seg", "{segment: no-such-segment}")),
     "bad-seg", ["when", "no-such-segment"]),
    ("reference-to-a-family",
     catalog(segment("fam", "{event: {signal: product_viewed, where: {category: $value}, within: 30d}}",
                     "  family: {signal: product_viewed, within: 30d}\n") + segment("bad-seg", "{segment: fam}")),
     "bad-seg", ["when", "fam"]),
    ("reference-cycle",
     catalog(segment("seg-a", "{all: [{segment: seg-b}]}") + segment("seg-b", "{not: {segment: seg-a}}")),
     "seg-a", ["seg-a -> seg-b -> seg-a"]),
    ("self-reference", catalog(segment("bad-seg", "{any: [{segment: bad-seg}]}")),
     "bad-seg", ["cycle", "bad-seg -> bad-seg"]),
    ("value-outside-a-family",
     catalog(segment("bad-seg", "{event: {signal: product_viewed, where: {category: $value}, within: 30d}}")),
     "bad-seg", ["when.event.where", "$value"]),
    ("ratio-per-message-on-browsing",
     catalog(segment("bad-seg", "{ratio: {numerator: product_viewed, denominator: page_viewed, within: 30d, "
                                "per: message, compare: '> 0.5'}}")),
     "bad-seg", ["when.ratio", "per: message"]),
    ("ratio-min-denominator-zero",
     catalog(segment("bad-seg", "{ratio: {numerator: email_opened, denominator: email_delivered, within: 30d, "
                                "compare: '> 0.5', min_denominator: 0}}")),
     "bad-seg", ["when.ratio.min_denominator"]),
    ("aggregate-of-a-valueless-signal",
     catalog(segment("bad-seg", "{aggregate: {fn: sum, signal: email_opened, compare: '> 1'}}")),
     "bad-seg", ["when.aggregate", "email_opened"]),
    ("unknown-consent-state", catalog(segment("bad-seg", "{consent: {email: maybe}}")),
     "bad-seg", ["when.consent", "maybe"]),
    ("missing-name", catalog("bad-seg:\n  description: For the test.\n  when: {event: {signal: order_placed}}\n"),
     "bad-seg", ["name"]),
    ("missing-when", catalog("bad-seg:\n  name: A segment\n  description: For the test.\n"),
     "bad-seg", ["when"]),
    ("empty-description", catalog("bad-seg:\n  name: A\n  description: ''\n  when: {event: {signal: order_placed}}\n"),
     "bad-seg", ["description"]),
    ("uppercase-segment-id", catalog(segment("Recent-Buyers", "{event: {signal: order_placed}}")),
     "Recent-Buyers", ["pattern"]),
    ("segment-id-with-spaces", catalog(segment("'recent buyers'", "{event: {signal: order_placed}}")),
     "recent buyers", ["pattern"]),
    ("empty-all", catalog(segment("bad-seg", "{all: []}")),
     "bad-seg", ["when.all"]),
    ("trait-with-two-operators", catalog(segment("bad-seg", "{trait: {name: country, equals: ES, exists: true}}")),
     "bad-seg", ["when.trait", "equals", "exists"]),
    ("lifetime-read-of-browsing-with-where",
     catalog(segment("bad-seg", "{event: {signal: product_viewed, where: {category: shoes}}}")),
     "bad-seg", ["when.event", "product_viewed", "where", "within"]),
    ("sync-not-a-boolean", catalog(segment("bad-seg", "{event: {signal: order_placed}}", "  sync: maybe\n")),
     "bad-seg", ["sync"]),
    ("sync-a-number-not-a-boolean", catalog(segment("bad-seg", "{event: {signal: order_placed}}", "  sync: 0\n")),
     "bad-seg", ["sync"]),
    ("unknown-comparison-operator",
     catalog(segment("bad-seg", "{aggregate: {fn: sum, signal: order_placed, compare: {op: '~', value: 1}}}")),
     "bad-seg", ["when.aggregate.compare.op"]),
    ("conditions-nested-too-deeply",
     catalog(segment("bad-seg", "{not: " * 17 + "{event: {signal: order_placed}}" + "}" * 17)),
     "bad-seg", ["when", "16 levels"]),
    ("comparison-value-not-a-number",
     catalog(segment("bad-seg", "{aggregate: {fn: sum, signal: order_placed, compare: {op: '>', value: .nan}}}")),
     "bad-seg", ["when.aggregate.compare.value"]),
]


@pytest.mark.parametrize(("text", "segment_id", "fields"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_segment_is_an_error_naming_file_segment_and_field(text, segment_id, fields):
    with pytest.raises(CatalogError) as raised:
        Catalog.from_yaml(text, source=SOURCE)
    message = str(raised.value)
    assert message.startswith(SOURCE + ":")
    assert f"segment {segment_id!r}" in message
    for field in fields:
        assert field in message


def test_lifetime_read_of_checkouts_names_the_segment_and_field():
    text = catalog(segment("ok-seg", "{event: {signal: order_placed}}")
                   + segment("bad-seg", "{event: {signal: checkout_started}}"))
    with pytest.raises(CatalogError) as raised:
        Catalog.from_yaml(text, source=SOURCE)
    message = str(raised.value)
    assert message.startswith(SOURCE + ":")
    assert "checkout_started" in message
    assert "segment 'bad-seg'" in message
    assert "when.event" in message


def test_lifetime_read_of_checkouts_is_rejected():
    text = catalog(segment("bad-seg", "{event: {signal: checkout_started}}"))
    with pytest.raises(CatalogError, match=r"^bad\.yaml: .*checkout_started"):
        Catalog.from_yaml(text, source=SOURCE)


@pytest.mark.parametrize(("text", "words"), [
    ("- version: 1\n- segments: {}\n", ["mapping"]),
    ("just a string\n", ["mapping"]),
    ("", ["mapping"]),
    ("version: 1\nsegments: [\n", ["not valid YAML"]),
    ("version: 2\n" + "segments:\n" + textwrap.indent(segment("ok", "{event: {signal: order_placed}}"), "  "),
     ["version"]),
    ("version: 1\nsegments: {}\n", ["segments"]),
    ("version: 1\n", ["segments"]),
], ids=["a-list", "a-string", "empty-file", "broken-yaml", "unknown-version", "no-segments", "missing-segments"])
def test_malformed_file_is_an_error_naming_the_file(text, words):
    with pytest.raises(CatalogError) as raised:
        Catalog.from_yaml(text, source=SOURCE)
    message = str(raised.value)
    assert message.startswith(SOURCE + ":")
    for word in words:
        assert word in message


def test_malformed_trait_is_an_error_naming_the_trait_and_field():
    text = catalog(segment("ok", "{event: {signal: order_placed}}"), traits="ltv:\n  sum: {signal: order_placd}\n")
    with pytest.raises(CatalogError) as raised:
        Catalog.from_yaml(text, source=SOURCE)
    message = str(raised.value)
    assert message.startswith(SOURCE + ":")
    assert "trait 'ltv'" in message
    assert "sum.signal" in message


def test_every_problem_in_a_file_is_reported():
    text = catalog(segment("first-bad", "{event: {signal: order_placed, within: 14 days}}")
                   + segment("second-bad", "{consent: {email: maybe}}"))
    with pytest.raises(CatalogError) as raised:
        Catalog.from_yaml(text, source=SOURCE)
    lines = str(raised.value).splitlines()
    assert any("segment 'first-bad'" in line and "when.event.within" in line for line in lines)
    assert any("segment 'second-bad'" in line and "when.consent" in line for line in lines)
    assert all(line.startswith(SOURCE + ":") for line in lines)


def test_unreadable_catalog_file_is_an_error_naming_the_path(tmp_path):
    missing = tmp_path / "missing.yaml"
    with pytest.raises(CatalogError, match="missing.yaml"):
        load_catalog(missing)


def test_malformed_catalog_file_error_names_its_path(tmp_path):
    path = tmp_path / "custom.yaml"
    path.write_text(catalog(segment("bad-seg", "{evnt: {signal: order_placed}}")), encoding="utf-8")
    with pytest.raises(CatalogError) as raised:
        load_catalog(path)
    assert str(raised.value).startswith(f"{path}: segment 'bad-seg': when.evnt")


# -- valid catalogs ---------------------------------------------------------------------------------


def test_the_shipped_default_catalog_loads():
    shipped = load_catalog()
    assert "recent-buyers" in shipped.segments
    assert shipped.segments["category-browsers"].family is not None
    assert shipped.segments["suppressed"].sync is False
    assert len(shipped.version) == 12
    assert shipped.version == default_evaluator().version


def test_valid_flow_style_and_block_style_are_equivalent():
    block = catalog("""\
        buyers:
          name: Buyers
          description: Bought in the last 3 days.
          when:
            event:
              signal: order_placed
              within: 3d
        """)
    flow = catalog(segment("buyers", "{event: {signal: order_placed, within: 3d}}"))
    assert Catalog.from_yaml(block).segments["buyers"].when == Catalog.from_yaml(flow).segments["buyers"].when


def view(at: int, category: str) -> CustomerEvent:
    return CustomerEvent(
        event_id=f"view-{at}-{category}", source="test", type=EventType.PRODUCT_VIEWED,
        occurred_at=datetime.fromtimestamp(at, UTC), identity=Identity(email="ana@example.com"),
        properties=BrowseProperties(category=category),
    )


def unsubscribe(at: int) -> CustomerEvent:
    return CustomerEvent(
        event_id=f"unsub-{at}", source="test", type=EventType.EMAIL_UNSUBSCRIBED,
        occurred_at=datetime.fromtimestamp(at, UTC), identity=Identity(email="ana@example.com"),
        properties=EmailProperties(message_id="m1"),
    )


def order(order_id: str, at: int, total: str = "10.00") -> CustomerEvent:
    when = datetime.fromtimestamp(at, UTC)
    return CustomerEvent(
        event_id=f"{order_id}-{at}", source="test", type=EventType.ORDER, occurred_at=when,
        identity=Identity(email="ana@example.com"),
        properties=OrderProperties(order_id=order_id, total=Decimal(total), updated_at=when),
    )


def test_custom_catalog_with_changed_thresholds_changes_evaluation():
    # A copy of the shipped file with two thresholds changed, as default_catalog.yaml's header suggests.
    shipped = DEFAULT_CATALOG.read_text(encoding="utf-8")
    recent_14d = "event: {signal: order_placed, within: 14d}\n\n  repeat-buyers"
    high_500 = 'aggregate: {fn: sum, signal: order_placed, compare: ">= 500"}'
    assert shipped.count(recent_14d) == 1 and shipped.count(high_500) == 1
    custom_text = shipped.replace(recent_14d, recent_14d.replace("14d", "7d")).replace(high_500, high_500.replace("500", "100"))
    custom = CatalogEvaluator(Catalog.from_yaml(custom_text, source="custom.yaml"))
    assert custom.version != default_evaluator().version

    profile = Profile(profile_id="p1")
    profile.apply(order("o1", T0, total="100.00"), aliases=[])

    # recent-buyers: within 7 days instead of 14
    assert "recent-buyers" in custom.evaluate(profile, T0 + 7 * DAY - 1).segments
    assert "recent-buyers" not in custom.evaluate(profile, T0 + 7 * DAY).segments
    assert custom.evaluate(profile, T0 + 1).next_due_at == T0 + 7 * DAY
    assert "recent-buyers" in default_evaluator().evaluate(profile, T0 + 7 * DAY).segments
    assert default_evaluator().evaluate(profile, T0 + 1).next_due_at == T0 + 14 * DAY
    # high-value: 100 instead of 500
    assert "high-value" in custom.evaluate(profile, T0 + 1).segments
    assert "high-value" not in default_evaluator().evaluate(profile, T0 + 1).segments


def test_minimal_custom_catalog_evaluates_only_its_own_segments():
    text = catalog(segment("big-spenders", "{aggregate: {fn: sum, signal: order_placed, compare: '>= 50'}}")
                   + segment("recent", "{event: {signal: order_placed, within: 2d}}")
                   + segment("recent-big", "{all: [{segment: recent}, {segment: big-spenders}]}"),
                   traits="orders:\n  count: {signal: order_placed}\n")
    evaluator = CatalogEvaluator(Catalog.from_yaml(text, source="mini.yaml"))
    profile = Profile(profile_id="p1")
    profile.apply(order("o1", T0, total="60.00"), aliases=[])
    ev = evaluator.evaluate(profile, T0 + 2 * DAY - 1)
    assert ev.segments == {"big-spenders", "recent", "recent-big"}
    assert ev.traits == {"orders": 1}
    assert ev.next_due_at == T0 + 2 * DAY
    assert evaluator.evaluate(profile, T0 + 2 * DAY).segments == {"big-spenders"}


def test_custom_catalog_category_filters_compare_case_insensitively():
    text = catalog(segment("sale-browsers", "{event: {signal: product_viewed, where: {category: [Summer Sale, Shoes]}, within: 7d}}"))
    evaluator = CatalogEvaluator(Catalog.from_yaml(text, source="custom.yaml"))
    for category, member in (("summer sale", True), ("SUMMER  SALE", True), ("shoes", True), ("shirts", False)):
        profile = Profile(profile_id="p1")
        profile.apply(view(T0, category), aliases=[])
        assert ("sale-browsers" in evaluator.evaluate(profile, T0 + 60).segments) is member, category


def test_unsynced_custom_segments_keep_suppressed_profiles_and_synced_ones_do_not():
    text = catalog(segment("buyers-synced", "{event: {signal: order_placed}}")
                   + segment("buyers-internal", "{event: {signal: order_placed}}", "  sync: false\n")
                   + segment("suppressed", "{consent: {email: [unsubscribed]}}", "  sync: false\n"))
    evaluator = CatalogEvaluator(Catalog.from_yaml(text, source="custom.yaml"))
    profile = Profile(profile_id="p1")
    profile.apply(order("o1", T0), aliases=[])
    assert evaluator.evaluate(profile, T0 + 60).segments == {"buyers-synced", "buyers-internal"}
    profile.apply(unsubscribe(T0 + 120), aliases=[])
    assert evaluator.evaluate(profile, T0 + 180).segments == {"buyers-internal", "suppressed"}
