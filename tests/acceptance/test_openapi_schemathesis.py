"""The management API checked against the OpenAPI document it publishes, property-based (schemathesis).

The local runner (`segctl local start-api`, base_url in conftest.py) is seeded with signed webhooks
first, and the generator is given their ids as examples, so that requests meet real profiles and
segments and not only 404s. Every response must pass schemathesis's checks: no 5xx, a documented
status code and content type, a body that matches the documented schema, invalid input refused.

The cases the run found once (an incomplete document, 500s on a body that is not UTF-8 JSON or
multipart without a boundary, lax types, an unknown comparison operator) are pinned at the end.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
import schemathesis
from conftest import start_api
from hypothesis import HealthCheck, settings
from schemathesis import checks
from segctl.demo import http as request
from segctl.provision import dev_secret_values
from segctl.signing import segment_headers
from support import catalog_with_an_experiment, signed_shopify


@pytest.fixture(scope="module")
def base_url(signing_keys, tmp_path_factory):
    catalog = tmp_path_factory.mktemp("catalog") / "catalog.yaml"
    catalog.write_text(catalog_with_an_experiment())
    yield from start_api(signing_keys, tmp_path_factory, extra_env={"CATALOG_FILE": str(catalog)})

pytestmark = pytest.mark.acceptance
NOW = datetime.now(UTC).replace(microsecond=0)

#: Status codes answered per operation over the run, to show that it met real data.
ANSWERS: defaultdict[str, Counter[int]] = defaultdict(Counter)

EXCLUDED = [
    # API Gateway answers a method that has no route with its own 404 {"message":"Not Found"} (the local
    # runner does the same): an HTTP API has no 405 to give.
    checks.unsupported_method,
    # "Schema-valid request rejected": some valid-looking input is refused with the documented 400 by
    # design. Cursors are opaque (only one the API issued, for that profile or segment, is accepted), and
    # a segment definition has rules JSON Schema does not carry (a condition has exactly one kind, no
    # reference cycles, ...). Invalid input must still be refused: negative_data_rejection stays on.
    checks.positive_data_acceptance,
]

def _missing_responses(raw: dict) -> list[str]:
    """The gaps of the published document: ``METHOD path: status``."""
    gaps = []
    for path, operations in raw["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            if "200" not in responses:
                gaps.append(f"{method.upper()} {path}: 200")
            if (operation.get("parameters") or operation.get("requestBody")) and "400" not in responses:
                gaps.append(f"{method.upper()} {path}: 400")
    return gaps


# --- Data ---

def _iso(hours_ago: float) -> str:
    return (NOW - timedelta(hours=hours_ago)).isoformat()


def _post(base_url: str, path: str, body: bytes, headers: dict) -> None:
    status, answer = request("POST", f"{base_url}{path}", body, headers)
    assert status == 200, (path, status, answer)


def _order(base_url: str, order_id: int, email: str, hours_ago: float, total: str) -> None:
    at = _iso(hours_ago)
    payload = {"id": order_id, "email": email, "created_at": at, "updated_at": at, "total_price": total,
               "customer": {"id": order_id * 7, "email": email}}
    _post(base_url, "/webhooks/shopify", *signed_shopify(payload, event_id=f"evt-order-{order_id}"))


def _views(base_url: str, user: str, email: str, category: str) -> None:
    secret = dev_secret_values({})["segment"]
    messages = [{"type": "track", "event": "Product Viewed", "userId": user, "messageId": f"m-{user}-{i}",
                 "timestamp": _iso(2 + i), "properties": {"category": category, "product_id": str(i)}}
                for i in range(3)]
    messages.append({"type": "identify", "userId": user, "messageId": f"m-{user}-id", "timestamp": _iso(2),
                     "traits": {"email": email}})
    for m in messages:
        body = json.dumps(m).encode()
        _post(base_url, "/webhooks/segment", body, segment_headers(secret, body))


@pytest.fixture(scope="module")
def seeded(base_url) -> dict[str, str]:
    """Profiles in several segments, one in a family's instance; returns {email: profile id}."""
    _order(base_url, 1, "repeat@example.com", 30, "40.00")
    _order(base_url, 2, "repeat@example.com", 1, "25.00")
    _order(base_url, 3, "big@example.com", 2, "900.00")
    _order(base_url, 4, "erase-me@example.com", 3, "10.00")
    checkout = {"id": 5, "token": "co-schema", "email": "cart@example.com", "created_at": _iso(2),
                "updated_at": _iso(2), "total_price": "30.00", "completed_at": None}
    _post(base_url, "/webhooks/shopify", *signed_shopify(checkout, topic="checkouts/create", event_id="evt-co-5"))
    _views(base_url, "u-shoes", "shoes@example.com", "Shoes")
    wanted = {"recent-buyers": 3, "repeat-buyers": 1, "high-value": 1, "cart-abandoners": 1,
              "category-browsers:shoes": 1}
    deadline = time.monotonic() + 60
    sizes: dict[str, int] = {}
    while time.monotonic() < deadline:  # processing is asynchronous (bus, queue)
        sizes = {s["id"]: s["size"] for s in request("GET", f"{base_url}/segments")[1]["segments"]}
        if all(sizes.get(sid, 0) >= n for sid, n in wanted.items()):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"seeding never reached {wanted}; sizes: {sizes}")
    ids = {}
    for email in ("repeat@example.com", "big@example.com", "erase-me@example.com", "cart@example.com",
                  "shoes@example.com"):
        status, body = request("GET", f"{base_url}/profiles?email={email}")
        assert status == 200, (email, body)
        ids[email] = body["profile_id"]
    return ids


def _add_examples(raw: dict, seeded: dict[str, str]) -> None:
    """Real ids as `examples` of the parameters, and preview bodies (the document has none), for the
    generator to start from. Constraints are untouched: only what is sent changes."""
    kept = [seeded[e] for e in ("repeat@example.com", "big@example.com", "cart@example.com", "shoes@example.com")]
    by_parameter = {
        ("get", "profile_id"): [*kept, "no-such-profile"],
        ("delete", "profile_id"): [seeded["erase-me@example.com"], "no-such-profile"],
        ("get", "segment_id"): ["recent-buyers", "repeat-buyers", "cart-abandoners", "category-browsers",
                                "category-browsers:shoes", "category-browsers:nothing", "no-such-segment"],
        ("get", "email"): ["repeat@example.com", " Big@Example.com ", "nobody@example.com"],
        ("get", "experiment_id"): ["engaged-test", "no-such-experiment"],
        ("get", "segment"): ["recent-buyers", "category-browsers:shoes", "no-such-segment"],
    }
    for operations in raw["paths"].values():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if values := by_parameter.get((method, parameter["name"])):
                    parameter["examples"] = {f"e{i}": {"value": v} for i, v in enumerate(values)}
    preview = raw["paths"]["/segments/preview"]["post"]["requestBody"]["content"]["application/json"]
    preview["examples"] = {name: {"value": body} for name, body in PREVIEWS.items()}


# In the document's own form (objects, seconds), which the API accepts beside the catalog's shorthand.
PREVIEWS = {
    "new": {"segment_id": "big-spenders", "definition": {
        "name": "Big spenders", "description": "Lifetime revenue of at least 100.",
        "when": {"aggregate": {"fn": "sum", "signal": "order_placed", "compare": {"op": ">=", "value": 100}}}}},
    "edit": {"segment_id": "repeat-buyers", "sample": 2, "definition": {
        "name": "Repeat Buyers", "description": "Purchased at least once in 30 days.",
        "when": {"event": {"signal": ["order_placed"], "within": 2592000, "count": {"op": ">=", "value": 1}}}}},
}


@pytest.fixture(scope="module")
def api_schema(base_url, seeded):
    loaded = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    _add_examples(loaded.raw_schema, seeded)
    return loaded


# --- The run ---

schema = schemathesis.pytest.from_fixture("api_schema")

# Bounded: 25 generated requests per operation, beside schemathesis's examples and coverage cases; the
# same ones every run on CI (tests/conftest.py's "ci" profile does not reach explicit settings).
SETTINGS = settings(max_examples=25, deadline=None, derandomize=bool(os.environ.get("CI")), database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.fixture(autouse=True)
def _node_id_for_lazy_schema(request):
    """schemathesis 4.32's lazy schema reads (and renames) ``item._nodeid``, which pytest 9.2 no longer
    has (``nodeid`` derives from ``item._id``). A plain copy lets it run; its renaming then only changes
    the copy, so reports show this test's id with each operation as a subtest."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


def _check(case) -> None:
    response = case.call()
    ANSWERS[case.operation.label][response.status_code] += 1
    case.validate_response(response, excluded_checks=EXCLUDED)


@schema.exclude(method="DELETE").parametrize()
@SETTINGS
def test_reads_and_the_preview_conform_to_the_document(case):
    _check(case)


@schema.include(method="DELETE").parametrize()
@SETTINGS
def test_erasure_conforms_to_the_document(case):
    """After the reads, since it erases whoever it finds (the runner is a throwaway)."""
    _check(case)


def test_the_run_met_real_data():
    """Each operation answered 2xx at least once: the run did not only meet 404s and 400s."""
    if not ANSWERS:
        pytest.skip("counts the requests of the schemathesis tests above; run it with them")
    without_success = {op: dict(codes) for op, codes in ANSWERS.items() if not any(200 <= c < 300 for c in codes)}
    assert not without_success, without_success


# --- What the run once found, pinned ---

def test_the_document_lists_what_the_api_answers(base_url):
    """Every operation documents its 200 body, and 400 wherever it takes parameters or a body; no 422."""
    status, doc = request("GET", f"{base_url}/openapi.json")
    assert status == 200
    assert _missing_responses(doc) == []
    assert not [p for p, ops in doc["paths"].items() for op in ops.values() if "422" in op["responses"]]


def _preview_body(**changes) -> bytes:
    return json.dumps({**PREVIEWS["new"], **changes}).encode()


@pytest.mark.parametrize(("content_type", "body"), [
    pytest.param("multipart/form-data", _preview_body(), id="multipart-without-boundary"),
    pytest.param("application/json", b"\xff\xfe<u", id="body-not-utf8"),
    pytest.param("application/json", _preview_body(sample=False), id="boolean-for-integer"),
    pytest.param("application/json", _preview_body(definition={**PREVIEWS["new"]["definition"], "sync": 0}),
                 id="integer-for-boolean"),
    # Not met by the run (it seldom builds a condition valid enough to be evaluated): found reading the
    # document, which showed Comparison.op as any string.
    pytest.param("application/json", _preview_body(definition={**PREVIEWS["new"]["definition"], "when": {
        "aggregate": {"fn": "sum", "signal": "order_placed", "compare": {"op": "~", "value": 1}}}}),
                 id="unknown-comparison-operator"),
])
def test_a_malformed_preview_is_refused_with_a_4xx(base_url, seeded, content_type, body):
    status, answer = request("POST", f"{base_url}/segments/preview", body, {"Content-Type": content_type})
    assert status in (400, 415), (status, answer)
