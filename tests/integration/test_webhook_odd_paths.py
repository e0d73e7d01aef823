"""Odd paths under /webhooks/ (issue 10, defect 9): an unknown source is 404 whatever its characters,
never a 503 "fault" (a provider retries those forever) and never an ERROR log line. On the in-memory
fakes (tests/fakes.py): the answer is the webhook function's, whatever holds the data."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from segctl.server import decoded_path, request_event
from segmentation.service.ingest import ADAPTERS

ODD = ["/webhooks/shopify%00", "/webhooks/a%22b", '/webhooks/a"b', "/webhooks/a%5Cb", "/webhooks/%60x%60",
       "/webhooks/shop%23ify", "/webhooks/%3F", "/webhooks/%E2%80%A8", "/webhooks/%F0%9F%9B%92", "/webhooks/%0A",
       "/webhooks/%ZZ", "/webhooks/a%2Fb", "/webhooks/%2e%2e", "/webhooks/shopify%20"]


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if '"level":"ERROR"' in line.replace(" ", "") or "Traceback" in line]


@pytest.mark.parametrize("path", ODD)
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_an_odd_source_is_404_and_logs_no_error(fake_api, fakes, capfd, path, method):
    resp = fake_api(method, path, b"{}", {"Content-Type": "application/json"})
    assert resp.status == 404, resp.text
    assert resp.json()["error"] == "not_found" and "unknown source" in resp.json()["reason"]
    out, err = capfd.readouterr()
    assert _errors(out + err) == []


# Any segment after /webhooks/: any characters, percent-encoded or raw where a URL allows it.
segments = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12)
kept_raw = st.sampled_from(["", "%", "\"'`\\", "!$&()*+,;=:@~", "<>[]{}|^", "%\"'\\<>"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segment=segments, safe=kept_raw, method=st.sampled_from(["POST", "GET", "HEAD", "PUT"]))
@example(segment="shopify\x00", safe="", method="POST")
@example(segment='a"b', safe="", method="POST")
@example(segment="%00", safe="%", method="POST")
def test_any_path_segment_that_is_not_a_source_is_404_never_5xx(fake_api, fakes, segment, safe, method):
    path = "/webhooks/" + quote(segment, safe=safe)
    function, _ = request_event(fake_api.router, method, path)
    if function is None:
        return  # several segments (a raw "/"): no route, API Gateway answers 404 itself
    if decoded_path(path).removeprefix("/webhooks/") in ADAPTERS:
        return  # "%73hopify" is shopify
    resp = fake_api(method, path, b"{}", {"Content-Type": "application/json"})
    assert resp.status == 404, (path, resp.status, resp.text)
