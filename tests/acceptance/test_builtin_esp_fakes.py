"""Without KLAVIYO_API_URL / MAILCHIMP_API_URL, the local runner syncs to built-in fakes it starts
itself (holding the destinations file's lists and audience), and the demo's report shows what each
received."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from segctl.demo import destinations_report, http
from segctl.provision import dev_secret_values
from segctl.runtime import LocalStack
from segctl.server import LocalApi
from segctl.signing import shopify_headers
from segctl.template import Template
from support import TEMPLATE

pytestmark = pytest.mark.acceptance


def test_the_local_runner_syncs_to_its_built_in_fakes_and_reports_what_they_received(monkeypatch, tmp_path):
    path = tmp_path / "destinations.yaml"
    path.write_text("version: 1\ndestinations:\n"
                    "  - id: k\n    type: klaviyo\n    segments: {recent-buyers: {list: RBUY01}}\n"
                    "  - id: m\n    type: mailchimp\n    list: aud9\n    segments: {recent-buyers: {tag: Buyers}}\n"
                    "    merge_fields: {ORDERS: order_count}\n")
    for name in ("AWS_ENDPOINT_URL", "KLAVIYO_API_URL", "MAILCHIMP_API_URL", "KLAVIYO_API_KEY", "MAILCHIMP_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DESTINATIONS_FILE", str(path))
    template = Template(TEMPLATE)
    template.parameters["EspSyncBatchingWindow"] = "0"
    template.parameters["MetricsBatchingWindow"] = "0"
    stack = LocalStack(template, log_level="ERROR", esp_fakes=True).start()
    api = LocalApi(stack, port=0).start()
    stack.start_pollers()
    try:
        assert set(stack.esp_fakes) == {"klaviyo", "mailchimp"}
        created = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = (f'{{"id":1,"email":"ana@example.com","created_at":"{created}","total_price":"20.00",'
                f'"customer":{{"id":5,"email":"ana@example.com"}}}}').encode()
        headers = shopify_headers(dev_secret_values({})["shopify"], body, "orders/create", "e1", "s.myshopify.com")
        assert http("POST", f"{api.url}/webhooks/shopify", body, headers)[0] == 200
        assert stack.drain(60)
        assert [e for p in stack.pollers for e in p.errors] == []
        assert stack.esp_fakes["klaviyo"].members("RBUY01") == {"ana@example.com"}
        assert stack.esp_fakes["mailchimp"].tag_members("aud9", "Buyers") == {"ana@example.com"}
        report = destinations_report(stack, str(path))
        assert "list RBUY01 <- recent-buyers: +1 added, -0 removed; now 1: ana@example.com" in report
        assert "tag 'Buyers' <- recent-buyers: +1 added" in report
        assert "merge fields ORDERS set on 1 profiles" in report
    finally:
        api.stop()
        stack.stop()
