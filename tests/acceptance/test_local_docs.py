"""The local runner's Swagger UI page (GET /docs, not a template route) and the document it shows.

The page must work offline: it and every file it references come from the runner itself (Swagger UI
5 is vendored in tools/segctl/static/swagger-ui), and nothing points the browser at another host.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

import pytest
from support import ROOT

pytestmark = pytest.mark.acceptance


def get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


class References(HTMLParser):
    """Every URL an HTML page makes the browser load or link to (src, href...)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "data", "poster") and value:
                self.urls.append((tag, value))


def test_docs_page_and_everything_it_references_load_from_the_runner_itself(base_url):
    status, content_type, body = get(f"{base_url}/docs")
    assert status == 200 and content_type.startswith("text/html")
    page = body.decode()
    assert not re.findall(r"(?i)\b(?:https?:)?//[a-z0-9.-]+", page), "the page names another host"
    refs = References()
    refs.feed(page)
    scripts = [url for tag, url in refs.urls if tag == "script"]
    styles = [url for tag, url in refs.urls if tag == "link" and url.endswith(".css")]
    assert scripts and styles
    origin = urlsplit(base_url)
    assets = {}
    for _, url in refs.urls:
        absolute = urlsplit(urljoin(f"{base_url}/docs", url))
        assert (absolute.scheme, absolute.netloc) == (origin.scheme, origin.netloc), url
        status, content_type, data = get(absolute.geturl())
        assert status == 200 and data, (url, status)
        assets[url] = (content_type, data)
    bundle_type, bundle = assets[scripts[0]]
    assert bundle_type.startswith("text/javascript")
    assert re.search(rb'PACKAGE_VERSION:"5\.', bundle), "OpenAPI 3.1 needs Swagger UI 5"
    css_type, css = assets[styles[0]]
    assert css_type.startswith("text/css")
    css_urls = re.findall(rb"url\(\s*['\"]?([^'\")]+)", css) + re.findall(rb"@import\s+['\"]([^'\"]+)", css)
    assert all(u.startswith(b"data:") for u in css_urls), [u[:60] for u in css_urls if not u.startswith(b"data:")]
    # Swagger UI asks validator.swagger.io for a badge unless validatorUrl is null; the spec is ours.
    assert re.search(r'SwaggerUIBundle\(\{url: "/openapi.json", [^}]*validatorUrl: null', page)


def test_only_the_vendored_files_are_served_and_their_license_ships_with_them(base_url):
    for path in ("/docs/swagger-ui/LICENSE", "/docs/swagger-ui/README.md", "/docs/swagger-ui/../server.py",
                 "/docs/swagger-ui/%2e%2e/server.py", "/docs/swagger-ui/"):
        assert get(f"{base_url}{path}")[0] == 404, path
    vendored = ROOT / "tools" / "segctl" / "static" / "swagger-ui"
    assert "Apache License" in (vendored / "LICENSE").read_text()
    assert (vendored / "NOTICE").is_file()


def test_docs_is_the_runners_own_page_not_a_route_of_the_template(template):
    """In AWS there is no /docs (docs/api.md says so): the local page shadows no route of the API."""
    assert not [r.path for r in template.routes() if r.path == "/docs" or r.path.startswith("/docs/")]


def test_openapi_json_is_the_3_1_document_of_the_management_api(base_url):
    status, content_type, body = get(f"{base_url}/openapi.json")
    assert status == 200 and content_type.startswith("application/json")
    doc = json.loads(body)
    assert doc["openapi"].startswith("3.1")
    assert {"/profiles/{profile_id}/history", "/segments/{segment_id}", "/segments/preview"} <= set(doc["paths"])
