"""`segctl local start-api --seed-demo`: the demo's customers stay up behind the API (and Swagger UI)."""

from __future__ import annotations

import time
from urllib.parse import quote

import pytest
from conftest import start_api
from segctl.demo import http as request

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module")
def seeded(signing_keys, tmp_path_factory):
    """The runner's URL once it says it is ready, after seeding (the API answers /health before)."""
    for url in start_api(signing_keys, tmp_path_factory, args=("--seed-demo",)):
        log = start_api.log_path
        deadline = time.monotonic() + 240
        while "Ready:" not in log.read_text():
            assert time.monotonic() < deadline, f"never ready:\n{log.read_text()}"
            time.sleep(0.5)
        yield url, log.read_text()


def profile(url: str, email: str) -> dict:
    status, body = request("GET", f"{url}/profiles?email={quote(email)}")
    assert status == 200, (email, status, body)
    return body


def test_the_demo_data_is_loaded_before_ready_and_says_so(seeded):
    url, log = seeded
    assert log.index("Seeding the demo's data") < log.index("Demo data loaded") < log.index("Ready:")
    assert "responses: 60 x 200" in log  # every webhook of both demo streams was accepted
    # a customer of the live webhooks, from three sources (Segment, Shopify, Mandrill)
    maya = profile(url, "maya.singh@example.com")
    assert maya["traits"]["order_count"] == 1 and "recent-buyers" in maya["segments"]
    # a customer of the imported shop history: four orders, the last within the month
    olga = profile(url, "olga.ivanova@example.com")
    assert olga["traits"]["order_count"] == 4 and {"repeat-buyers", "high-value"} <= set(olga["segments"])


def test_segments_have_the_demo_members_to_explore(seeded):
    url, _ = seeded
    status, body = request("GET", f"{url}/segments")
    assert status == 200
    sizes = {s["id"]: s["size"] for s in body["segments"]}
    assert sizes["recent-buyers"] >= 10 and sizes["at-risk"] >= 1 and sizes["inactive"] >= 1
    status, page = request("GET", f"{url}/segments/recent-buyers/members?limit=100")
    assert status == 200 and len(page["profile_ids"]) == sizes["recent-buyers"]


def test_the_runner_keeps_serving_after_seeding(seeded):
    url, _ = seeded
    time.sleep(1)
    assert request("GET", f"{url}/health")[0] == 200
    assert profile(url, "maya.singh@example.com")["profile_id"]
