"""The demo's sample streams stay valid: every delivery, signed as its source signs, is accepted."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from urllib.parse import urlsplit

import boto3
import pytest
from segctl.demo import signed_request
from segctl.provision import dev_secret_values
from segctl.signing import demo_keys
from segmentation import bootstrap
from segmentation.domain.catalog import load_catalog
from support import ROOT


@pytest.mark.parametrize("stream", ["shopify-stream.json", "mixed-stream.json"])
def test_every_demo_delivery_is_accepted(api, aws, stream, monkeypatch):
    monkeypatch.chdir(ROOT)
    ec_key, ec_public, rsa_key, rsa_public = demo_keys()
    secrets = {**dev_secret_values({}), "sendgrid": ec_public, "magento": rsa_public}
    boto3.client("secretsmanager").put_secret_value(SecretId=aws.physical_name("WebhookSecret"),
                                                    SecretString=json.dumps(secrets))
    bootstrap.reset()
    doc = json.loads((ROOT / "events" / "demo" / stream).read_text())
    signing = {**secrets, "_sendgrid_private": ec_key, "_magento_private": rsa_key}
    sources = set()
    for d in doc["deliveries"]:
        path, body, headers = signed_request(d, doc, signing, datetime.now(UTC))
        resp = api("POST", path, body, headers)
        assert resp.status == 200, (d.get("source"), resp.text)
        assert resp.json()["accepted"] >= 1, (d, resp.text)  # every delivery tells the demo something
        sources.add(urlsplit(path).path.rsplit("/", 1)[1])
    if stream == "mixed-stream.json":
        assert sources == {"shopify", "segment", "mandrill", "mailchimp", "woocommerce", "klaviyo", "sendgrid", "magento"}


def _demo_output() -> str:
    """`segctl demo` as `make demo` runs it, in its own process (its own embedded AWS): its stdout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("AWS_ENDPOINT_URL", "DESTINATIONS_FILE", "CATALOG_FILE", "KLAVIYO_API_URL", "MAILCHIMP_API_URL")}
    done = subprocess.run([sys.executable, "-m", "segctl.cli", "demo"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _movers(section: str) -> dict[tuple[str, str], set[str]]:
    """(SegmentEntered|SegmentExited, segment) -> the emails a time jump of the demo lists."""
    out = {}
    for kind, segment, count, emails in re.findall(r"^ {4}(Segment\w+)\s+(\S+)\s+(\d+)  (.+)$", section, re.M):
        out[(kind, segment)] = set(emails.split(", "))
        assert len(out[(kind, segment)]) == int(count)
    return out


def test_the_demo_moves_time_through_the_scheduled_sweep_to_at_risk_then_inactive():
    """`make demo` runs the template's sweep at the day after each threshold of the catalog (At-Risk:
    last activity more than 30 days ago; Inactive: more than 60) and shows who moved, from the
    SegmentEntered / SegmentExited events on the bus, with their cause `time`."""
    catalog = load_catalog(None)
    days = [catalog.segments[s].when.last.more_than // 86400 + 1 for s in ("at-risk", "inactive")]
    text = _demo_output()
    at_risk_now = set(re.search(r"^at-risk\s+\d+  (.+)$", text, re.M).group(1).split(", "))
    assert "maya.singh@example.com" not in at_risk_now  # she ordered and opened an email hours ago

    sections = re.split(r"^  \+(\d+) days \(", text.split("Moving time forward:", 1)[1], flags=re.M)
    jumps = {int(d): body for d, body in zip(sections[1::2], sections[2::2], strict=True)}
    assert sorted(jumps) == days
    first, second = (jumps[d] for d in days)
    assert re.search(r"events on the bus, cause time\n", first) and re.search(r"events on the bus, cause time\n", second)

    moved = _movers(first)
    entered_at_risk = moved[("SegmentEntered", "at-risk")]
    assert "maya.singh@example.com" in entered_at_risk  # 31 days after her last activity
    assert not entered_at_risk & at_risk_now
    assert moved[("SegmentExited", "at-risk")] == at_risk_now  # past 60 days by then
    assert at_risk_now <= moved[("SegmentEntered", "inactive")]

    moved = _movers(second)
    assert moved[("SegmentExited", "at-risk")] == entered_at_risk
    assert entered_at_risk <= moved[("SegmentEntered", "inactive")]

    sample = json.loads(text.split("as a consumer of the bus receives it:\n", 1)[1].splitlines()[0])
    assert sample["source"] == "segmentation.profiles" and sample["detail-type"] == "SegmentEntered"
    assert sample["detail"]["segment_id"] == "inactive" and sample["detail"]["cause"] == "time"
    # it ends by saying how to keep its data up for the dashboard
    assert "segctl demo --serve, then open the dashboard at http://127.0.0.1:3000/dashboard" in text


def test_demo_serve_is_the_runner_seeded_with_the_demo_and_kept_up(monkeypatch):
    """`segctl demo --serve` runs `local start-api --seed-demo` on its port (tests/acceptance/
    test_local_seed_demo.py checks what that serves)."""
    from segctl import cli

    called = {}
    monkeypatch.setattr(cli, "cmd_start_api", lambda args: called.update(vars(args)) or 0)
    assert cli.main(["demo", "--serve", "--port", "3123"]) == 0
    assert called["seed_demo"] is True and called["port"] == 3123 and called["parameter_overrides"] == []
    called.clear()
    monkeypatch.setattr("segctl.demo.run", lambda *a: 0)
    assert cli.main(["demo"]) == 0 and called == {}  # without --serve: the demo itself
