"""Every management route of issue 6 over HTTP, through `segctl local start-api` (conftest.base_url)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from segctl.demo import http as request
from segmentation.domain.catalog import DEFAULT_CATALOG
from support import ROOT
from test_local_api import eventually, order, post_shopify

pytestmark = pytest.mark.acceptance
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def people(base_url):
    """Two recent buyers, one of them a big spender; processed through the bus and the queue."""
    assert post_shopify(base_url, order(9001, "h1@example.com", hours_ago=0.5)) == 200
    assert post_shopify(base_url, order(9002, "h2@example.com", hours_ago=5, total="700.00")) == 200
    return {e: eventually(base_url, e, lambda b: "recent-buyers" in b["segments"])["profile_id"]
            for e in ("h1@example.com", "h2@example.com")}


def test_history_route(base_url, people):
    status, body = request("GET", f"{base_url}/profiles/{people['h2@example.com']}/history?limit=1")
    assert status == 200 and len(body["changes"]) == 1 and body["cursor"]
    status, rest = request("GET", f"{base_url}/profiles/{people['h2@example.com']}/history?cursor={body['cursor']}")
    segments = {c["segment_id"] for c in body["changes"] + rest["changes"] if c["change"] == "entered"}
    assert {"recent-buyers", "high-value"} <= segments


def test_segment_route(base_url, people):
    status, body = request("GET", f"{base_url}/segments/high-value")
    assert status == 200
    assert body["size"] == 1 and body["members"]["profile_ids"] == [people["h2@example.com"]]
    assert body["last_change_at"] and body["definition"]["name"] == body["name"]
    assert request("GET", f"{base_url}/segments/nope")[0] == 404


def test_preview_route(base_url, people):
    definition = {"name": "Recent Buyers", "description": "Within two hours.",
                  "when": {"event": {"signal": "order_placed", "within": "2h"}}}
    payload = json.dumps({"segment_id": "recent-buyers", "definition": definition}).encode()
    status, body = request("POST", f"{base_url}/segments/preview", payload, JSON)
    assert status == 200, body
    assert body["complete"] and body["leaving"] >= 1
    assert people["h2@example.com"] in {m["profile_id"] for m in body["leave_sample"]}
    assert people["h1@example.com"] not in {m["profile_id"] for m in body["leave_sample"]}
    bad = json.dumps({"segment_id": "x", "definition": {**definition, "when": {"segment": "nope"}}}).encode()
    status, body = request("POST", f"{base_url}/segments/preview", bad, JSON)
    assert status == 400 and "unknown segment" in body["message"]


def test_segctl_previews_the_segments_a_catalog_file_changes(base_url, people, tmp_path):
    edited = tmp_path / "catalog.yaml"
    text = DEFAULT_CATALOG.read_text()
    assert "event: {signal: order_placed, within: 14d}" in text
    edited.write_text(text.replace("event: {signal: order_placed, within: 14d}", "event: {signal: order_placed, within: 2h}"))
    out = subprocess.run([sys.executable, "-m", "segctl.cli", "segments", "preview", str(edited), "--url", base_url],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("recent-buyers (changed)")
    assert "would leave" in out.stdout and people["h2@example.com"] in out.stdout
    assert "repeat-buyers" not in out.stdout  # unchanged segments are not previewed
    same = subprocess.run([sys.executable, "-m", "segctl.cli", "segments", "preview", str(DEFAULT_CATALOG),
                           "--url", base_url], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert same.returncode == 0 and "nothing to preview" in same.stdout


def test_overlap_export_and_erase_routes(base_url, people):
    status, overlap = request("GET", f"{base_url}/segments/overlap")
    assert status == 200
    assert any({p["a"], p["b"]} == {"recent-buyers", "high-value"} for p in overlap["pairs"])
    pid = people["h1@example.com"]
    status, export = request("GET", f"{base_url}/profiles/{pid}/export")
    assert status == 200 and export["emails"] == ["h1@example.com"] and export["membership_history"]
    status, erased = request("DELETE", f"{base_url}/profiles/{pid}")
    assert status == 200 and erased["erased"] is True
    assert request("GET", f"{base_url}/profiles/{pid}")[0] == 404
    assert request("GET", f"{base_url}/profiles?email=h1@example.com")[0] == 404
    # A retry of the order that made them, delivered after the erasure, does not bring them back.
    assert post_shopify(base_url, order(9001, "h1@example.com", hours_ago=0.5), event_id="evt-retry") == 200
    eventually(base_url, "h2@example.com", lambda b: True)
    assert post_shopify(base_url, order(9003, "h2@example.com", hours_ago=0.2)) == 200
    eventually(base_url, "h2@example.com", lambda b: b["traits"]["order_count"] == 2)  # the queue has caught up
    assert request("GET", f"{base_url}/profiles?email=h1@example.com")[0] == 404
