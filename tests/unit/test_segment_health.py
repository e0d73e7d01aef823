"""Segment health warnings (issue 15): each kind at its boundary."""

from __future__ import annotations

from datetime import date

from fakes import InMemoryMetricsStore
from segmentation.service.health import warnings
from segmentation.service.segment_metrics import ACCOUNT, DayFigures

START, END = date(2026, 11, 1), date(2026, 11, 30)


def kinds(found: list[dict]) -> list[tuple[str, list[str]]]:
    return [(w["kind"], w["segments"]) for w in found]


def segs(*sizes: int, family: str | None = None) -> list[dict]:
    return [{"id": f"s{i}", "size": n, "family": family} for i, n in enumerate(sizes)]


def test_more_than_ten_synced_segments_is_a_warning_ten_is_not():
    assert warnings([], {f"s{i}" for i in range(10)}, [], None, START, END, 0) == []
    (w,) = warnings([], {f"s{i}" for i in range(11)}, [], None, START, END, 0)
    assert w["kind"] == "too_many_synced" and len(w["segments"]) == 11 and "11 segments" in w["message"]


def test_pairs_sharing_more_than_80_percent_are_a_warning():
    pairs = [{"a": "x", "b": "y", "jaccard": 0.8}, {"a": "x", "b": "z", "jaccard": 0.8001}]
    assert kinds(warnings([], set(), pairs, None, START, END, 0)) == [("overlap", ["x", "z"])]


def test_segments_under_the_minimum_size_but_not_family_instances():
    found = warnings(segs(99, 100) + segs(1, family="category-browsers"), set(), [], None, START, END, 100)
    assert kinds(found) == [("too_small", ["s0"])]
    assert warnings(segs(0), set(), [], None, START, END, 0) == []  # 0 turns it off


def test_an_unsubscribe_rate_above_the_accounts_beyond_doubt():
    store = InMemoryMetricsStore()
    store.add({(ACCOUNT, "2026-11-10"): DayFigures(counts={"delivered": 10000, "unsubscribed": 50}),  # 0.5 %
               ("s0", "2026-11-10"): DayFigures(counts={"delivered": 1000, "unsubscribed": 20}),  # 2 %: sure
               ("s1", "2026-11-10"): DayFigures(counts={"delivered": 100, "unsubscribed": 1}),  # 1 % of 100: maybe
               ("s2", "2026-12-10"): DayFigures(counts={"delivered": 1000, "unsubscribed": 20})}, "t")  # after END
    found = warnings(segs(500, 500, 500), set(), [], store, START, END, 0)
    assert kinds(found) == [("high_unsubscribe", ["s0"])]
    assert "2.00%" in found[0]["message"] and "0.50%" in found[0]["message"]


def test_an_experiments_union_and_its_arms_overlap_by_construction_and_are_not_warned_about():
    pairs = [{"a": "exp", "b": "exp--a", "jaccard": 1.0}, {"a": "x", "b": "y", "jaccard": 0.9}]
    found = warnings([], set(), pairs, None, START, END, 0, related={frozenset(("exp", "exp--a"))})
    assert kinds(found) == [("overlap", ["x", "y"])]
