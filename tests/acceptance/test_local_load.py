"""The local runner under concurrent load (issue 13): 48 clients at once get their answers (no
connection reset: the listen backlog holds them), invocations of one function run in several
execution environments at once, and every event lands once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from segctl.demo import http
from segctl.provision import dev_secret_values
from segctl.runtime import LocalStack
from segctl.server import LocalApi
from segctl.signing import shopify_headers
from segctl.template import Template
from support import TEMPLATE

pytestmark = pytest.mark.acceptance
CLIENTS = 48


def test_concurrent_clients_are_all_answered_and_every_event_lands(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "DESTINATIONS_FILE"):
        monkeypatch.delenv(name, raising=False)
    template = Template(TEMPLATE)
    template.parameters["MetricsBatchingWindow"] = "0"  # the drain below waits for every queue
    stack = LocalStack(template, log_level="ERROR").start()
    api = LocalApi(stack, port=0).start()
    stack.start_pollers()
    secret = dev_secret_values({})["shopify"]
    created = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    busy = {"now": 0, "peak": 0}
    lock = threading.Lock()

    def counting(handler, event, context):  # how many WebhookFunction invocations overlap
        with lock:
            busy["now"] += 1
            busy["peak"] = max(busy["peak"], busy["now"])
        try:
            return handler(event, context)
        finally:
            with lock:
                busy["now"] -= 1

    try:
        for index in range(stack.MAX_ENVIRONMENTS):  # every execution environment counts its invocations
            handler, env_lock = stack._environment("WebhookFunction", index)
            stack._environments["WebhookFunction"][index] = (
                lambda e, c, h=handler: counting(h, e, c), env_lock)

        def post(n: int) -> int:
            body = (f'{{"id":{5000 + n},"email":"load{n}@example.com","created_at":"{created}",'
                    f'"total_price":"10.00","customer":{{"id":{700 + n},"email":"load{n}@example.com"}}}}').encode()
            headers = shopify_headers(secret, body, "orders/create", f"evt-load-{n}", "load.myshopify.com")
            return http("POST", f"{api.url}/webhooks/shopify", body, headers)[0]

        # moto keeps its state per process: another in-process test may have left buyers behind
        before = http("GET", f"{api.url}/segments/recent-buyers")[1]["size"]
        with ThreadPoolExecutor(CLIENTS) as pool:
            statuses = list(pool.map(post, range(CLIENTS)))
        assert statuses == [200] * CLIENTS
        assert busy["peak"] > 1, "invocations of one function ran one at a time"
        assert stack.drain(120)
        assert [e for p in stack.pollers for e in p.errors] == []
        size = http("GET", f"{api.url}/segments/recent-buyers")[1]["size"]
        assert size - before == CLIENTS
    finally:
        api.stop()
        stack.stop()
