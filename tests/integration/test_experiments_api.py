"""GET /experiments and /experiments/{id} on moto, through template.yaml's routes (issue 15): a catalog
that declares an experiment; the report reads the arms' daily figures and sizes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from segmentation import bootstrap
from segmentation.service.segment_metrics import DayFigures
from support import catalog_with_an_experiment


def test_the_api_reports_a_declared_experiment_and_404s_an_unknown_one(aws, api, monkeypatch, tmp_path):
    changed = tmp_path / "catalog.yaml"
    changed.write_text(catalog_with_an_experiment())
    monkeypatch.setenv("CATALOG_FILE", str(changed))
    bootstrap.reset()
    day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    store = bootstrap.metrics_store()
    store.add({("engaged-test--recent", day): DayFigures(counts={"delivered": 400, "opened": 100}),
               ("engaged-test--ever", day): DayFigures(counts={"delivered": 380, "opened": 76})}, "t1")
    out = api("GET", "/experiments")
    assert out.status == 200, out.text
    (experiment,) = out.json()["experiments"]
    assert experiment["id"] == "engaged-test" and experiment["segment_id"] == "engaged-test"
    assert [(a["variant"], a["trials"], a["successes"]) for a in experiment["arms"]] == [
        ("recent", 400, 100), ("ever", 380, 76)]
    assert experiment["verdict"] == "collecting" and experiment["needed_per_arm"] > 400
    one = api("GET", f"/experiments/engaged-test?from={day}&to={day}").json()
    assert one["difference"]["value"] == 76 / 380 - 100 / 400
    assert api("GET", "/experiments/nope").status == 404
    assert {"engaged-test", "engaged-test--recent", "engaged-test--ever"} <= {
        s["id"] for s in api("GET", "/segments").json()["segments"]}


def test_cohorts_from_webhook_orders_through_the_api(aws, api):
    from support import deliver_to_profile_function, signed_shopify

    now = datetime.now(UTC)
    first = (now - timedelta(days=40)).replace(day=1, hour=12)  # a month that is over
    orders = [(5101, "one@example.com", first), (5102, "one@example.com", first + timedelta(days=2)),
              (5103, "two@example.com", first + timedelta(days=1)), (5104, "new@example.com", now - timedelta(hours=2))]
    for order_id, email, at in orders:
        body, headers = signed_shopify({"id": order_id, "email": email, "created_at": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                        "total_price": "40.00"}, event_id=f"evt-{order_id}")
        assert api("POST", "/webhooks/shopify", body, headers).status == 200
    deliver_to_profile_function(aws)
    out = api("GET", "/cohorts?segment=recent-buyers")
    assert out.status == 200, out.text
    body = out.json()
    months = {m["month"]: m for m in body["months"]}
    assert months[first.strftime("%Y-%m")] == {"month": first.strftime("%Y-%m"), "customers": 2,
                                               "repeat_rate": 0.5, "avg_ltv": "60.00"}
    assert body["segment"]["members"]["customers"] == 1 and body["segment"]["members"]["avg_ltv"] == "40.00"
    assert body["segment"]["non_members"] == {"customers": 2, "repeat_rate": 0.5, "avg_ltv": "60.00"}
    assert body["complete"] is True
    assert api("GET", "/cohorts?segment=no-such").status == 404
    assert api("GET", "/cohorts?cursor=garbage").status == 400


def test_an_experiments_union_and_its_arm_get_no_overlap_warning(fakes, fake_api, monkeypatch, tmp_path):
    """They share their members by construction; two ordinary segments that do are still warned about."""
    from segmentation.domain.profile import MembershipChange, Profile

    changed = tmp_path / "catalog.yaml"
    changed.write_text(catalog_with_an_experiment())
    monkeypatch.setenv("CATALOG_FILE", str(changed))
    bootstrap.reset()
    for n, segments in enumerate([("engaged-test", "engaged-test--recent", "recent-buyers", "repeat-buyers")] * 3):
        pid = f"p{n}"
        fakes.store.save(Profile(profile_id=pid), [], [
            MembershipChange(profile_id=pid, segment_id=s, change="entered", at=1_800_000_000, cause="t", version=1)
            for s in segments])
    pairs = {frozenset((p["a"], p["b"])): p["jaccard"] for p in fake_api("GET", "/segments/overlap").json()["pairs"]}
    assert pairs[frozenset(("engaged-test", "engaged-test--recent"))] == 1.0
    overlaps = [set(w["segments"]) for w in fake_api("GET", "/segments").json()["warnings"] if w["kind"] == "overlap"]
    assert {"recent-buyers", "repeat-buyers"} in overlaps
    assert not [w for w in overlaps if w & {"engaged-test", "engaged-test--recent"} == w]
