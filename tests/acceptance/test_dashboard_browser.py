"""The dashboard in a real browser (headless Chromium driven by Playwright).

`segctl local start-api` gets the demo's data (the shop's history, then the demo's signed webhook
streams); Chromium opens /dashboard and a segment's page and must see the segments, their charts and
the overlap heatmap, without a console error. Then `segctl dashboard --url` (SigV4-signed calls) is
pointed at a stand-in for a deployed API in front of the runner, which adds an experiment and cohorts
when the runner has none: Chromium must see the experiment with its interval. Screenshots go to
tests/artifacts/ (and docs/img/dashboard.png when DASHBOARD_SCREENSHOT_DOCS=1).

Without Chromium (Debian's `chromium`) or Playwright the browser tests skip, saying so; under CI=true
they fail instead: .ci/run installs Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import free_port, start_api
from segctl.demo import http, signed_request
from segctl.provision import dev_secret_values
from segctl.signing import demo_keys
from support import ROOT, answer_json, catalog_with_an_experiment

pytestmark = pytest.mark.acceptance
KEYS = demo_keys()  # the server verifies SendGrid and Magento deliveries with these keys' public halves
ARTIFACTS = ROOT / "tests" / "artifacts"
STREAMS = ("events/demo/shopify-stream.json", "events/demo/mixed-stream.json")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def browser_or_skip():
    """Playwright's sync API and the Chromium binary; skips (fails under CI=true) when either is missing."""
    reason = None
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        reason = f"Chromium not found at {CHROMIUM} (apt-get install chromium; or set CHROMIUM=path)"
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        reason = reason or "Playwright is not installed (pip install -e '.[dev]')"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the browser test needs a browser under CI: {reason}")
        pytest.skip(reason)
    return sync_playwright


@pytest.fixture(scope="module")
def catalog_file(tmp_path_factory) -> Path:
    """The shipped catalog with an experiment (engaged-test), so the dashboard shows a real one."""
    path = tmp_path_factory.mktemp("catalog") / "catalog.yaml"
    path.write_text(catalog_with_an_experiment())
    return path


@pytest.fixture(scope="module")
def base_url(signing_keys, tmp_path_factory, catalog_file):
    yield from start_api(signing_keys, tmp_path_factory, extra_env={"CATALOG_FILE": str(catalog_file)},
                         args=("--parameter-overrides", "MetricsBatchingWindow=1", "EspSyncBatchingWindow=1"))


@pytest.fixture(scope="module")
def demo_data(base_url, tmp_path_factory, catalog_file):
    """The demo's data in the runner: `segctl demo`'s history import, then its webhook streams."""
    endpoint = re.search(r"AWS endpoint: (\S+)", start_api.log_path.read_text()).group(1)
    workdir = tmp_path_factory.mktemp("history")
    # as `segctl import csv` does: the stack's settings in this process, its data at the runner's endpoint
    script = ("import sys; from datetime import UTC, datetime; from pathlib import Path; "
              "from segctl.demo import DEMO_HISTORY, import_history; from segctl.runtime import LocalStack; "
              "from segctl.template import Template; LocalStack(Template('template.yaml'), log_level='WARNING').start(); "
              "sys.exit(import_history(DEMO_HISTORY, datetime.now(UTC), Path(sys.argv[1])))")
    out = subprocess.run([sys.executable, "-c", script, str(workdir)], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "AWS_ENDPOINT_URL": endpoint, "CATALOG_FILE": str(catalog_file),
                              "SENDGRID_PUBLIC_KEY": KEYS[1],
                              "MAGENTO_PUBLIC_KEY": KEYS[3]}, timeout=300)  # its start re-provisions the secret
    assert out.returncode == 0, out.stdout + out.stderr
    secrets = {**dev_secret_values({}), "sendgrid": KEYS[1], "magento": KEYS[3],
               "_sendgrid_private": KEYS[0], "_magento_private": KEYS[2]}
    now = datetime.now(UTC)
    refused = []
    for stream in STREAMS:
        doc = json.loads((ROOT / stream).read_text())
        for d in doc["deliveries"]:
            path, body, headers = signed_request(d, doc, secrets, now)
            status, answer = http("POST", f"{base_url}{path}", body, headers)
            if status != 200:
                refused.append((stream, d.get("source", "shopify"), status, answer))
    assert refused == []
    # the figures arrive through the metrics queue: wait until emails count and the sizes settle
    previous, deadline = None, time.monotonic() + 120
    while time.monotonic() < deadline:
        status, body = http("GET", f"{base_url}/segments/metrics")
        rows = body.get("segments", []) if status == 200 else []
        state = [(r["segment_id"], r["size"], r["totals"]["delivered"]) for r in rows]
        if state and state == previous and any(d for *_, d in state):
            return rows
        previous = state
        time.sleep(1.5)
    pytest.fail(f"the demo's figures never settled: {previous}")


class ConsoleWatch:
    """Console errors and uncaught exceptions of a page (a CSP violation is one)."""

    def __init__(self, page):
        self.errors: list[str] = []
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url}"))


@pytest.fixture(scope="module")
def browser():
    sync_playwright = browser_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=shutil.which(CHROMIUM) or CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def test_the_local_runner_serves_the_dashboard_as_a_self_contained_page(base_url):
    """Without a browser too: the page loads nothing from anywhere (its CSP forbids it)."""
    with urllib.request.urlopen(f"{base_url}/dashboard", timeout=30) as resp:
        assert resp.status == 200 and resp.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in resp.headers["content-security-policy"]
        html = resp.read().decode()
    assert "<script" not in html and "http://" not in html and "https://" not in html
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{base_url}/dashboard/segments/no-such-segment", timeout=30)
    assert err.value.code == 404


def test_chromium_shows_the_segments_their_charts_and_the_heatmap(browser, base_url, demo_data):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    console = ConsoleWatch(page)
    page.goto(f"{base_url}/dashboard", wait_until="load")
    rows = page.locator("tr.segment-row")
    shown = set(rows.evaluate_all("rs => rs.map(r => r.dataset.segment)"))
    assert {r["segment_id"] for r in demo_data} <= shown
    busiest = max(demo_data, key=lambda r: r["size"])
    row = page.locator(f'tr.segment-row[data-segment="{busiest["segment_id"]}"]')
    assert row.locator("td").nth(1).inner_text().strip() == str(busiest["size"])
    assert page.locator("svg.spark").count() >= 1  # a trend sparkline
    heat = page.locator("svg.heatmap g.heat-cell")
    assert heat.count() >= 4 and page.locator("svg.heatmap").bounding_box()["width"] > 100
    assert page.locator("#experiments").is_visible()
    real = page.locator('div.experiment[data-experiment="engaged-test"]')  # the runner's catalog declares it
    assert real.count() == 1 and "Collecting" in real.locator("p.verdict").inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-local.png"), full_page=True)

    row.locator("a").first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/dashboard/segments/{busiest['segment_id']}")
    assert page.locator("svg.chart").count() == 3 and page.locator("svg.chart polyline.series").count() >= 1
    assert page.locator(".size").inner_text() == str(busiest["size"])
    page.locator("#members a").first.click()  # explain a member
    page.wait_for_load_state("load")
    assert page.locator("table.explain tr.focus").inner_text().count("member") == 1
    assert "not a member" not in page.locator("table.explain tr.focus").inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-segment.png"), full_page=True)
    assert console.errors == []
    page.close()


#: an experiment with figures (the runner's own has none yet) and cohorts, in the API's shapes
FAKE_EXPERIMENTS = {"since": None, "until": None, "experiments": [{
    "id": "recency-vs-lifetime", "name": "Active in 7 days vs lifetime engagement",
    "description": "which definition of engaged opens more", "metric": "open_rate", "split": 50,
    "segment_id": "engaged-test",
    "arms": [{"variant": "a", "segment_id": "engaged-test:a", "size": 812, "trials": 640, "successes": 179,
              "rate": 0.2797, "ci95": [0.2457, 0.3164]},
             {"variant": "b", "segment_id": "engaged-test:b", "size": 790, "trials": 655, "successes": 221,
              "rate": 0.3374, "ci95": [0.3019, 0.3749]}],
    "difference": {"value": 0.0577, "ci95": [0.0072, 0.1082]}, "p_value": 0.0252, "min_detectable_effect": 0.05,
    "alpha": 0.05, "power": 0.8, "needed_per_arm": 1360, "verdict": "collecting",
    "verdict_text": "Collecting: 1360 messages per arm are needed before a verdict (640 and 655 so far)"}]}
FAKE_COHORTS = {"months": [{"month": "2026-09", "customers": 4, "repeat_rate": 0.5, "avg_ltv": "182.40"},
                           {"month": "2026-10", "customers": 3, "repeat_rate": 0.3333, "avg_ltv": "96.10"}],
                "segment": None}


@pytest.fixture
def deployed_api(base_url):
    """A stand-in for a deployed management API: forwards to the runner, records each request's
    Authorization, adds an experiment with figures to the runner's, and answers /cohorts with the
    fake if the runner has no such route."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            seen.append(self.headers.get("authorization", ""))
            path = self.path.split("?")[0]
            status, body = http("GET", f"{base_url}{self.path}")
            if path == "/experiments" and status == 200:  # a second one, with figures to draw intervals of
                body = {**body, "experiments": [*body["experiments"], *FAKE_EXPERIMENTS["experiments"]]}
            if path == "/cohorts" and status == 404:
                status, body = 200, FAKE_COHORTS
            answer_json(self, status, body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.seen = seen
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def test_segctl_dashboard_signs_its_calls_and_chromium_shows_an_experiment_with_its_interval(
        browser, demo_data, deployed_api, base_url):
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret-example",
           "AWS_SESSION_TOKEN": "token-example", "AWS_CONFIG_FILE": os.devnull,
           "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    env.pop("AWS_ENDPOINT_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "segctl.cli", "dashboard", "--url", deployed_api.url,
                             "--port", str(port), "--region", "eu-west-1"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert "/dashboard" in proc.stdout.readline()  # it says where to look once it listens
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        console = ConsoleWatch(page)
        page.goto(f"http://127.0.0.1:{port}/dashboard", wait_until="load")
        assert page.locator('div.experiment[data-experiment="engaged-test"]').count() == 1  # passed through
        experiment = page.locator('div.experiment[data-experiment="recency-vs-lifetime"]')
        text = " ".join(experiment.inner_text().split())
        assert "Difference +5.8 pts (95% interval +0.7 pts to +10.8 pts)" in text and "1360 per arm" in text
        assert experiment.locator("svg.interval").count() == 2 and experiment.locator("svg.interval .ci").count() == 3
        _, cohorts = http("GET", f"{base_url}/cohorts")  # the runner's own, from the demo's orders
        assert page.locator("tr.cohort-row").count() == len(cohorts["months"]) > 0
        assert page.locator("tr.segment-row").count() >= len(demo_data)
        page.screenshot(path=str(ARTIFACTS / "dashboard-aws.png"), full_page=True)
        if os.environ.get("DASHBOARD_SCREENSHOT_DOCS") == "1":
            page.screenshot(path=str(ROOT / "docs" / "img" / "dashboard.png"), full_page=True)
        assert console.errors == []
        page.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert deployed_api.seen and all(
        a.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") and "/eu-west-1/execute-api/aws4_request" in a
        for a in deployed_api.seen)
