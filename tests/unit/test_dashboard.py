"""The dashboard's pages, rendered from a fake data source returning the management API's shapes:
what a marketer sees (segments, trends, heatmap, experiments with intervals, cohorts, warnings),
and that nothing in the data can inject markup."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from segctl.dashboard.app import respond
from segctl.dashboard.charts import heatmap, sparkline
from segctl.dashboard.source import SourceError

DAYS = ["2026-11-28", "2026-11-29", "2026-11-30"]


def rate(value, lo=None, hi=None):
    return {"value": value, "ci95": [lo, hi] if lo is not None else None}


RATES = {"open_rate": rate(0.4, 0.3, 0.5), "click_rate": rate(0.1, 0.05, 0.2), "click_to_open_rate": rate(0.25),
         "unsubscribe_rate": rate(0.01), "conversion_rate": rate(0.02)}
TOTALS = {"delivered": 100, "opened": 40, "clicked": 10, "unsubscribed": 1, "bounced": 0, "spam": 0,
          "conversions": 2, "entered": 7, "exited": 3, "revenue": "120.50"}


def day(d, members, delivered=10, opened=4):
    return {**{k: 0 for k in TOTALS}, "revenue": "0", "day": d, "members": members, "delivered": delivered,
            "opened": opened, "clicked": 1, "entered": 2, "exited": 1}


class FakeSource:
    """Answers from a dict of path -> JSON (None: 404); records what was asked."""

    def __init__(self, routes: dict):
        self.routes = routes
        self.calls: list[tuple[str, dict]] = []

    def get(self, path, params=None):
        self.calls.append((path, dict(params or {})))
        answer = self.routes.get(path)
        if isinstance(answer, Exception):
            raise answer
        return answer(params or {}) if callable(answer) else answer


def api(**overrides) -> dict:
    routes = {
        "/segments": {"segments": [
            {"id": "recent-buyers", "name": "Recent buyers", "description": "ordered in 30 days", "size": 12},
            {"id": "vip", "name": "VIP", "description": "big spenders", "size": 3}],
            "warnings": [{"kind": "overlap", "segments": ["recent-buyers", "vip"],
                          "message": "recent-buyers and vip overlap at 0.85"}]},
        "/segments/metrics": {"since": DAYS[0], "until": DAYS[-1], "segments": [
            {"segment_id": "recent-buyers", "size": 12, "members": [8, 10, 12], "totals": TOTALS, "rates": RATES},
            {"segment_id": "vip", "size": 3, "members": [3, 3, 3], "totals": TOTALS, "rates": RATES}]},
        "/segments/overlap": {"segments": ["recent-buyers", "vip"], "pairs": [
            {"a": "recent-buyers", "b": "vip", "a_size": 12, "b_size": 3, "overlap": 3, "jaccard": 0.25}]},
        "/experiments": {"since": DAYS[0], "until": DAYS[-1], "experiments": [{
            "id": "recency-vs-lifetime", "name": "Recency vs lifetime", "description": "which engages more",
            "metric": "open_rate", "split": 50, "segment_id": "engaged",
            "arms": [{"variant": "a", "segment_id": "engaged:a", "size": 500, "trials": 400, "successes": 120,
                      "rate": 0.30, "ci95": [0.256, 0.348]},
                     {"variant": "b", "segment_id": "engaged:b", "size": 480, "trials": 410, "successes": 148,
                      "rate": 0.361, "ci95": [0.315, 0.409]}],
            "difference": {"value": 0.061, "ci95": [-0.003, 0.125]}, "p_value": 0.062,
            "min_detectable_effect": 0.05, "alpha": 0.05, "power": 0.8, "needed_per_arm": 1470,
            "verdict": "collecting", "verdict_text": "Collecting: 1470 per arm needed before a verdict"}]},
        "/cohorts": lambda p: {"months": [{"month": "2026-10", "customers": 30, "repeat_rate": 1 / 3,
                                           "avg_ltv": "88.00"}],
                               "segment": None if not p.get("segment") else {
                                   "segment_id": p["segment"],
                                   "members": {"customers": 10, "repeat_rate": 0.5, "avg_ltv": "140.00"},
                                   "non_members": {"customers": 20, "repeat_rate": 0.25, "avg_ltv": "62.00"}}},
        "/segments/recent-buyers": {"id": "recent-buyers", "name": "Recent buyers", "description": "ordered lately",
                                    "family": None, "definition": {"all": [{"trait": "days_since_last_order",
                                                                            "lte": 30}]},
                                    "size": 12, "last_change_at": "2026-11-30T10:00:00Z",
                                    "members": {"segment_id": "recent-buyers", "profile_ids": ["p-1", "p-2"],
                                                "cursor": None}},
        "/segments/recent-buyers/metrics": {"segment_id": "recent-buyers", "since": DAYS[0], "until": DAYS[-1],
                                            "days": [day(DAYS[0], 8), day(DAYS[1], 10), day(DAYS[2], 12, 20, 5)],
                                            "totals": TOTALS, "rates": RATES},
        "/profiles": lambda p: {"profile_id": "p-1", "email": p["email"], "segments": ["recent-buyers"]}
        if p.get("email") == "ana@example.com" else None,
        "/profiles/p-1/explain": {"profile_id": "p-1", "at": "2026-11-30T12:00:00Z", "catalog_version": "v7",
                                  "segments": {"recent-buyers": {"member": True, "condition": {
                                      "trait": "days_since_last_order", "lte": 30, "value": 4, "result": True}},
                                               "vip": {"member": False, "condition": {"trait": "ltv", "gte": 500,
                                                                                      "value": 88, "result": False}}}},
    }
    routes.update(overrides)
    return routes


class Tree(HTMLParser):
    """Elements by class (and SVG tags), with their attributes and text."""

    def __init__(self, html: str):
        super().__init__()
        self.elements: list[dict] = []
        self.open: list[dict] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        el = {"tag": tag, "attrs": dict(attrs), "text": ""}
        self.elements.append(el)
        if tag not in ("br", "input", "meta", "link", "img"):
            self.open.append(el)

    def handle_startendtag(self, tag, attrs):
        self.elements.append({"tag": tag, "attrs": dict(attrs), "text": ""})

    def handle_endtag(self, tag):
        while any(el["tag"] == tag for el in self.open):
            if self.open.pop()["tag"] == tag:
                break

    def handle_data(self, data):
        for el in self.open:
            el["text"] = f"{el['text']} {data}" if el["text"] else data

    def by_id(self, id_: str) -> dict:
        return next(el for el in self.elements if el["attrs"].get("id") == id_)

    def by_class(self, cls: str) -> list[dict]:
        return [el for el in self.elements if cls in (el["attrs"].get("class") or "").split()]


def get(source, path="/dashboard", query=""):
    status, headers, body = respond(source, path, query)
    return status, headers, body.decode()


def test_the_overview_shows_every_segment_with_its_trend_kpis_and_warnings():
    status, headers, html = get(FakeSource(api()))
    assert status == 200 and headers["content-type"].startswith("text/html")
    tree = Tree(html)
    rows = {r["attrs"]["data-segment"]: r for r in tree.by_class("segment-row")}
    assert set(rows) == {"recent-buyers", "vip"}
    row = rows["recent-buyers"]["text"]
    assert "Recent buyers" in row and "12" in row and "40.0%" in row and "120.50" in row
    # the trend: one point per day, rising to the last (the highest value is drawn at the top)
    spark = tree.by_class("spark")[0]
    assert "8 → 12" in spark["attrs"]["aria-label"]
    points = [el for el in tree.elements if el["tag"] == "polyline"][0]["attrs"]["points"].split()
    assert len(points) == 3 and float(points[-1].split(",")[1]) < float(points[0].split(",")[1])
    # the warning: in the health list and as a badge on both segments it names
    assert "recent-buyers and vip overlap at 0.85" in tree.by_class("warnings")[0]["text"]
    assert all("overlap" in r["text"] for r in rows.values())


def test_the_overlap_heatmap_has_a_cell_per_pair_with_its_jaccard_index():
    _, _, html = get(FakeSource(api()))
    cells = Tree(html).by_class("heat-cell")
    assert len(cells) == 4  # 2 x 2, the diagonal included
    cell = next(c for c in cells if c["attrs"]["data-a"] == "recent-buyers" and c["attrs"]["data-b"] == "vip")
    assert "3 in both, Jaccard 0.25" in cell["text"] and "0.25" in cell["text"]
    mirror = next(c for c in cells if c["attrs"]["data-a"] == "vip" and c["attrs"]["data-b"] == "recent-buyers")
    assert "Jaccard 0.25" in mirror["text"]


def test_a_heatmap_cell_darkens_with_the_overlap():
    def fill(j):
        svg = heatmap(["a", "b"], [{"a": "a", "b": "b", "a_size": 1, "b_size": 1, "overlap": 1, "jaccard": j}])
        cell = next(c for c in Tree(svg).by_class("heat-cell") if c["attrs"]["data-a"] == "a"
                    and c["attrs"]["data-b"] == "b")
        rect = Tree(svg).elements[Tree(svg).elements.index(cell) + 1]
        return sum(int(x) for x in rect["attrs"]["fill"][4:-1].split(","))

    assert fill(0.9) < fill(0.3) < fill(0.0)


def test_an_experiment_shows_its_arms_and_the_difference_with_its_interval():
    _, _, html = get(FakeSource(api()))
    tree = Tree(html)
    (x,) = tree.by_class("experiment")
    assert x["attrs"]["data-experiment"] == "recency-vs-lifetime"
    text = " ".join(x["text"].split())
    assert "30.0%" in text and "25.6% to 34.8%" in text and "36.1%" in text
    assert "Difference +6.1 pts (95% interval -0.3 pts to +12.5 pts)" in text
    assert "1470 per arm needed" in text and "Collecting" in text
    # the difference's interval crosses the zero line drawn on its chart
    charts = [el for el in tree.by_class("interval")]
    assert len(charts) == 2 and "-0.3 pts to +12.5 pts" in charts[1]["text"]
    assert tree.by_class("zero")


@pytest.mark.parametrize("answer", [None, {"since": "x", "until": "y", "experiments": []}])
def test_no_experiments_route_or_none_declared_says_so(answer):
    status, _, html = get(FakeSource(api(**{"/experiments": answer})))
    assert status == 200 and "No experiments declared." in html and not Tree(html).by_class("experiment")


def test_cohorts_show_each_month_and_members_vs_non_members_of_the_chosen_segment():
    source = FakeSource(api())
    _, _, html = get(source)
    (row,) = Tree(html).by_class("cohort-row")
    assert "2026-10" in row["text"] and "33.3%" in row["text"] and "88.00" in row["text"]
    assert not Tree(html).by_class("cohort-compare")
    _, _, html = get(source, query="segment=vip")
    (compare,) = Tree(html).by_class("cohort-compare")
    assert "50.0%" in compare["text"] and "62.00" in compare["text"]
    assert ("/cohorts", {"segment": "vip"}) in source.calls


def test_without_a_cohorts_route_the_page_still_renders():
    status, _, html = get(FakeSource(api(**{"/cohorts": None})))
    assert status == 200 and "Cohorts are not available" in html and Tree(html).by_class("segment-row")


def test_names_and_ids_from_the_api_cannot_inject_markup():
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    routes = api()
    routes["/segments"] = {"segments": [{"id": "vip", "name": evil, "description": evil, "size": 1}],
                           "warnings": [{"kind": evil, "segments": ["vip"], "message": evil}]}
    routes["/segments/overlap"] = {"segments": [evil, "vip"], "pairs": [
        {"a": evil, "b": "vip", "a_size": 1, "b_size": 1, "overlap": 1, "jaccard": 1.0}]}
    routes["/experiments"]["experiments"][0]["name"] = evil
    routes["/experiments"]["experiments"][0]["verdict_text"] = evil
    _, _, html = get(FakeSource(routes))
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    # and the browser may not run a script anyway
    _, headers, _ = get(FakeSource(routes))
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "script-src" not in headers["content-security-policy"]


def test_the_segment_page_charts_its_size_and_kpis_shows_its_definition_and_members():
    source = FakeSource(api())
    status, _, html = get(source, "/dashboard/segments/recent-buyers", "from=2026-11-28&to=2026-11-30")
    assert status == 200
    tree = Tree(html)
    charts = tree.by_class("chart")
    assert [c["attrs"]["aria-label"] for c in charts] == [
        "Members at the end of each day", "Daily rates (of the day's delivered messages)",
        "Entered, exited and delivered per day"]
    assert "open rate 2026-11-30: 25.0%" in charts[1]["text"]  # 5 opened of 20 delivered that day
    assert tree.by_class("size")[0]["text"] == "12"
    assert '"trait": "days_since_last_order"' in tree.by_id("definition")["text"]
    assert {a["attrs"]["href"] for a in tree.elements if a["tag"] == "a" and "profile=" in a["attrs"].get("href", "")} \
        == {"/dashboard/segments/recent-buyers?profile=p-1#explain", "/dashboard/segments/recent-buyers?profile=p-2#explain"}
    assert ("/segments/recent-buyers/metrics", {"from": "2026-11-28", "to": "2026-11-30"}) in source.calls


def test_explaining_a_profile_by_email_shows_each_segment_and_its_conditions():
    _, _, html = get(FakeSource(api()), "/dashboard/segments/recent-buyers", "email=ana%40example.com")
    (table,) = Tree(html).by_class("explain")
    text = " ".join(table["text"].split())
    assert "recent-buyers member" in text and "vip not a member" in text and '"value": 88' in text
    _, _, html = get(FakeSource(api()), "/dashboard/segments/recent-buyers", "email=nobody%40example.com")
    assert "No profile has that email." in html and not Tree(html).by_class("explain")


def test_a_family_instance_id_is_decoded_from_the_page_path():
    detail = dict(api()["/segments/recent-buyers"], id="category-browsers:shoes")
    source = FakeSource(api(**{"/segments/category-browsers%3Ashoes": detail,
                               "/segments/category-browsers%3Ashoes/metrics": None}))
    status, _, html = get(source, "/dashboard/segments/category-browsers%3Ashoes")
    assert status == 200 and "category-browsers:shoes" in html


def test_an_unknown_segment_is_a_404_page_and_an_unreadable_api_a_502_with_the_reason():
    status, _, html = get(FakeSource(api()), "/dashboard/segments/nope")
    assert status == 404 and "No segment nope" in html
    status, _, html = get(FakeSource(api(**{"/segments": SourceError("GET /segments answered 403: Forbidden")})))
    assert status == 502 and "answered 403: Forbidden" in html
    assert get(FakeSource(api()), "/dashboard/elsewhere")[0] == 404


def test_a_sparkline_needs_two_points():
    assert "<svg" not in sparkline([5])
    assert "<svg" in sparkline([None, 1, 2])
