"""Shared fixtures. Resources, names and environment come from template.yaml, never hand-copied.

Two backends: ``aws`` (moto holding everything template.yaml declares: for tests of the DynamoDB
layout, the template's wiring and the bus) and ``fakes`` (the in-memory ports of tests/fakes.py
wired into bootstrap: for tests of what the services do).
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import boto3
import pytest
from fakes import (
    InMemoryMetricsStore,
    InMemoryProfileStore,
    InMemoryShopStore,
    RecordingPublisher,
    RecordingQueue,
    StaticSecrets,
)
from hypothesis import settings
from hypothesis.database import DirectoryBasedExampleDatabase
from segctl.provision import dev_secret_values, provision
from segctl.template import Template
from segmentation import bootstrap
from support import ROOT, TEMPLATE, Api, Outbox

# CI explores the same examples every run, whatever ran before (a red build is reproducible, and
# prints the blob that replays it); developers get fresh examples each run, and keep the failing
# ones in .hypothesis/ so that the next run tries them first.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", database=DirectoryBasedExampleDatabase(ROOT / ".hypothesis" / "examples"))
settings.load_profile("ci" if os.environ.get("CI") else "dev")


def _test_account(monkeypatch) -> None:
    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")


def _function_environment(template: Template, monkeypatch) -> None:
    """Every function's environment, from template.yaml."""
    for fn in template.functions():
        for key, value in template.environment(fn).items():
            monkeypatch.setenv(key, value)


@pytest.fixture
def template_parameters() -> dict[str, str]:
    """Template parameter values the ``aws`` fixture deploys with (none: the defaults); a test module
    or a parametrized test overrides this fixture (``{"WebhookDuplicateAnswer": "on"}``)."""
    return {}


@pytest.fixture
def aws(monkeypatch, template_parameters):
    """An in-process moto AWS holding everything template.yaml declares, with the functions' env set.

    Yields the Template, whose names resolve to the resources created.
    """
    from moto import mock_aws

    _test_account(monkeypatch)
    with mock_aws():
        template = Template(TEMPLATE, parameters=template_parameters)
        provision(template, boto3.session.Session(region_name="us-east-1"), dev_secret_values({}))
        template.parameters["LogLevel"] = "WARNING"
        _function_environment(template, monkeypatch)
        bootstrap.reset()
        yield template
        bootstrap.reset()


@pytest.fixture
def outbox(aws) -> Outbox:
    return Outbox(aws)


@pytest.fixture
def api(aws) -> Api:
    return Api(aws)


@pytest.fixture(scope="session")
def template() -> Template:
    """template.yaml, read once (not provisioned anywhere): names, functions, routes, environment."""
    template = Template(TEMPLATE)
    template.parameters["LogLevel"] = "WARNING"
    return template


@dataclass
class Fakes:
    """The in-memory ports bootstrap hands out under the ``fakes`` fixture."""

    template: Template
    store: InMemoryProfileStore
    shops: InMemoryShopStore = field(default_factory=InMemoryShopStore)
    publisher: RecordingPublisher = field(default_factory=RecordingPublisher)
    secrets: StaticSecrets = field(default_factory=lambda: StaticSecrets(dev_secret_values({})))
    queue: RecordingQueue = field(default_factory=RecordingQueue)
    metrics: InMemoryMetricsStore = field(default_factory=InMemoryMetricsStore)

    def queued(self) -> list[dict]:
        """The CustomerEvents the webhook published and ProfileFunction has not consumed yet, as the
        template's rule would queue them (``detail-type``, ``detail``); what tests on moto read from
        ProfileQueue."""
        return self.publisher.customer_events()

    def nothing_stored(self) -> bool:
        """Nothing published and nothing learnt about the shop: a rejected delivery left no trace."""
        return not self.publisher.published and not self.shops.products and not self.shops.carts and not self.shops.owners

    def deliver(self) -> None:
        """Run ProfileFunction's handler over the CustomerEvents published so far, as the SQS event
        source mapping would (batches of up to 10, EventBridge envelopes), and take them from the
        record; every record must succeed. support.deliver_to_profile_function on the fakes."""
        from segctl.runtime import context_for, load_handler

        handler = load_handler(self.template.functions()["ProfileFunction"])
        events = self.publisher.take_customer_events()
        for start in range(0, len(events), 10):
            records = [{"messageId": f"fake-{start + i}", "receiptHandle": f"fake-{start + i}",
                        "body": json.dumps({"version": "0", "id": f"fake-{start + i}", "region": "us-east-1",
                                            "resources": [], **m}),
                        "attributes": {}, "messageAttributes": {}, "eventSource": "aws:sqs", "eventSourceARN": "arn",
                        "awsRegion": "us-east-1", "md5OfBody": ""} for i, m in enumerate(events[start:start + 10])]
            result = handler({"Records": records}, context_for(self.template, "ProfileFunction"))
            assert result == {"batchItemFailures": []}, result


@pytest.fixture
def fakes(template, monkeypatch) -> Iterator[Fakes]:
    """bootstrap wired to in-memory fakes (no AWS, no moto): every handler and service a test reaches
    through bootstrap runs on them. The functions' environment is template.yaml's, and any AWS call
    left over fails at once instead of leaving the machine."""
    _test_account(monkeypatch)
    _function_environment(template, monkeypatch)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard: nothing listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    bootstrap.reset()
    s = bootstrap.settings()
    f = Fakes(template, InMemoryProfileStore(s.due_shards, s.history_retention_days * 86400))
    with bootstrap.override(repository=f.store, shop_store=f.shops, publisher=f.publisher,
                            secrets=f.secrets, backfill_queue=f.queue, metrics_store=f.metrics):
        yield f
    bootstrap.reset()


@pytest.fixture
def fake_outbox(fakes) -> RecordingPublisher:
    """What the services published, as tests/support.Outbox shows the real bus's."""
    return fakes.publisher


@pytest.fixture
def fake_api(fakes) -> Api:
    """The template's routes through the real handlers, on the fakes."""
    return Api(fakes.template)


@pytest.fixture
def compare_calls(monkeypatch) -> list[bool]:
    """Every hmac.compare_digest call (its result), through the real function."""
    calls: list[bool] = []
    real = hmac.compare_digest

    def recording(a, b):
        result = real(a, b)
        calls.append(result)
        return result

    monkeypatch.setattr(hmac, "compare_digest", recording)
    return calls



@pytest.fixture
def fake_klaviyo():
    """A local Klaviyo (tools/segctl/espfakes/klaviyo.py) checking every request against Klaviyo's OpenAPI document.

    Point the sync at ``fake_klaviyo.base_url`` with key ``fake_klaviyo.api_key``; read the end state with
    ``snapshot()``, ``members(list_id)`` and ``profile_by_email()``; assert ``fake_klaviyo.invalid == []``.
    """
    from segctl.espfakes.klaviyo import FakeKlaviyo

    with FakeKlaviyo() as fake:
        assert fake.validating, "openapi-core (a dev dependency) checks every request: `make install`"
        yield fake
