"""The local runner's Swagger UI page (GET /docs, not a template route) and the document it shows."""

from __future__ import annotations

import json
import urllib.request

import pytest

pytestmark = pytest.mark.acceptance


def get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), resp.read()


def test_docs_is_swagger_ui_on_the_same_origin_openapi_document(base_url):
    status, content_type, body = get(f"{base_url}/docs")
    assert status == 200 and content_type.startswith("text/html")
    page = body.decode()
    assert "SwaggerUIBundle" in page and '"/openapi.json"' in page
    assert "swagger-ui-dist@5/" in page  # OpenAPI 3.1 needs Swagger UI 5


def test_openapi_json_is_the_3_1_document_of_the_management_api(base_url):
    status, content_type, body = get(f"{base_url}/openapi.json")
    assert status == 200 and content_type.startswith("application/json")
    doc = json.loads(body)
    assert doc["openapi"].startswith("3.1")
    assert {"/profiles/{profile_id}/history", "/segments/{segment_id}", "/segments/preview"} <= set(doc["paths"])
