"""The ESP sync through `segctl local start-api` (issue 12): a signed Shopify order over HTTP ends up
in the Klaviyo list and the Mailchimp tag of the destinations file, at the URLs given in
KLAVIYO_API_URL / MAILCHIMP_API_URL (fakes run by this test); `segctl sync reconcile` repairs what
someone changed in the ESP by hand, and its dry run reports the difference without sending it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import start_api
from segctl.demo import http
from segctl.espfakes.klaviyo import FakeKlaviyo
from segctl.espfakes.mailchimp import FakeMailchimp
from segctl.provision import dev_destination_keys, dev_secret_values
from segctl.signing import shopify_headers
from support import ROOT

pytestmark = pytest.mark.acceptance
DEST_KEYS = dev_destination_keys({})


@pytest.fixture(scope="module")
def esps(tmp_path_factory):
    klaviyo = FakeKlaviyo(api_key=DEST_KEYS["klaviyo"]).start()
    mailchimp = FakeMailchimp(api_key=DEST_KEYS["mailchimp"], lists={"aud1": []}).start()
    klaviyo.create_list("Recent buyers", "RBUY01")
    path = tmp_path_factory.mktemp("destinations") / "destinations.yaml"
    path.write_text("version: 1\ndestinations:\n"
                    "  - id: klaviyo-main\n    type: klaviyo\n    segments: {recent-buyers: {list: RBUY01}}\n"
                    "    properties: {OrderCount: order_count}\n"
                    "  - id: mailchimp-main\n    type: mailchimp\n    list: aud1\n"
                    "    segments: {recent-buyers: {tag: Recent Buyers}}\n")
    env = {"DESTINATIONS_FILE": str(path), "KLAVIYO_API_URL": klaviyo.base_url, "MAILCHIMP_API_URL": mailchimp.root_url}
    yield klaviyo, mailchimp, env
    klaviyo.stop()
    mailchimp.stop()
    assert klaviyo.invalid == [] and mailchimp.invalid == [] and mailchimp.consent_violations() == []


@pytest.fixture(scope="module")
def base_url(esps, signing_keys, tmp_path_factory):
    yield from start_api(signing_keys, tmp_path_factory, extra_env=esps[2],
                         args=("--parameter-overrides", "EspSyncBatchingWindow=1"))


def wait_for(check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return False


def reconcile(esps, *args: str) -> subprocess.CompletedProcess:
    endpoint = re.search(r"AWS endpoint: (\S+)", start_api.log_path.read_text()).group(1)
    env = {**os.environ, **esps[2], "AWS_ENDPOINT_URL": endpoint}
    return subprocess.run([sys.executable, "-m", "segctl.cli", "sync", "reconcile", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_an_order_reaches_klaviyo_and_mailchimp_and_a_reconcile_repairs_hand_edits(base_url, esps):
    klaviyo, mailchimp, _ = esps
    created = (datetime.now(UTC) - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = (f'{{"id":9101,"email":"ana@example.com","created_at":"{created}","updated_at":"{created}",'
            f'"total_price":"40.00","customer":{{"id":77,"email":"ana@example.com"}}}}').encode()
    headers = shopify_headers(dev_secret_values({})["shopify"], body, "orders/create", "evt-esp-1",
                              "demo-shop.myshopify.com")
    assert http("POST", f"{base_url}/webhooks/shopify", body, headers)[0] == 200
    assert wait_for(lambda: klaviyo.members("RBUY01") == {"ana@example.com"}
                    and mailchimp.tag_members("aud1", "Recent Buyers") == {"ana@example.com"})
    assert klaviyo.profile_by_email("ana@example.com")["properties"]["OrderCount"] == 1

    out = reconcile(esps, "--destination", "klaviyo-main", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "would change 0 addresses" in out.stdout

    # someone edits the list by hand: ana taken out, a stranger put in
    klaviyo.remove_from_list("RBUY01", "ana@example.com")
    klaviyo.add_profile("stray@example.com", lists=("RBUY01",))
    out = reconcile(esps, "--destination", "klaviyo-main", "--dry-run")
    assert out.returncode == 0 and "RBUY01: +1 -1" in out.stdout, out.stdout + out.stderr
    assert klaviyo.members("RBUY01") == {"stray@example.com"}  # a dry run sends nothing

    out = reconcile(esps, "--destination", "klaviyo-main")
    assert out.returncode == 0, out.stderr
    assert klaviyo.members("RBUY01") == {"ana@example.com"}
    assert reconcile(esps, "--destination", "nope").returncode == 2
