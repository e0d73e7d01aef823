"""Odd webhook paths over HTTP against `segctl local start-api` (issue 10, defect 9): 404, never 5xx."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

PATHS = ["/webhooks/shopify%00", "/webhooks/a%22b", '/webhooks/a"b', "/webhooks/a%5Cb", "/webhooks/%E2%80%A8",
         "/webhooks/%ZZ", "/webhooks/a%2Fb", "/webhooks/%F0%9F%9B%92"]


@pytest.mark.parametrize("path", PATHS)
def test_an_odd_source_over_http_is_404(base_url, path):
    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)  # the path goes out as written
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Content-Length", "2")
        conn.endheaders(b"{}")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 404, body
    assert json.loads(body)["error"] == "not_found"
