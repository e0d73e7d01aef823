"""template.yaml and the code agree: handlers import, every route is handled, env is complete."""

from __future__ import annotations

import re

import pytest
from segctl.runtime import load_handler
from segctl.template import Template
from segmentation.settings import Settings
from support import TEMPLATE

TEMPLATE_OBJ = Template(TEMPLATE)
FUNCTIONS = TEMPLATE_OBJ.functions()
ROUTES = TEMPLATE_OBJ.routes()


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_handler_of_every_function_is_importable_and_callable(name):
    handler = load_handler(FUNCTIONS[name])
    assert callable(handler)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_environment_satisfies_settings(name):
    env = TEMPLATE_OBJ.environment(name)
    required = {f.alias for f in Settings.model_fields.values() if f.is_required()}
    assert required <= set(env), f"{name} lacks {required - set(env)}"


def test_management_routes_require_iam_and_webhooks_do_not():
    for route in ROUTES:
        if route.path.startswith("/webhooks/") or route.path == "/health":
            assert route.auth is None, route.route_key
        else:
            assert route.auth == "AWS_IAM", route.route_key


def test_the_contract_routes_exist():
    keys = {r.route_key for r in ROUTES}
    for key in ("POST /webhooks/{source}", "GET /webhooks/{source}", "HEAD /webhooks/{source}",
                "GET /health", "GET /profiles", "GET /profiles/{profile_id}", "DELETE /profiles/{profile_id}",
                "GET /segments", "GET /segments/{segment_id}/members"):
        assert key in keys


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.route_key)
def test_every_template_route_reaches_a_handler_route(api, route):
    path = re.sub(r"\{(\w+)\+?\}", lambda m: {"source": "shopify"}.get(m.group(1), "x"), route.path)
    method = "PATCH" if route.method == "ANY" else route.method
    resp = api(method, path, b"", {"content-type": "application/json"})
    # Powertools answers an unrouted request with exactly this body; ours always say more.
    assert not (resp.status == 404 and resp.text and resp.json().get("message") == "Not found"), resp.text
    assert resp.status < 500, resp.text
