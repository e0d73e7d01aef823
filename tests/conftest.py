"""Shared fixtures. Resources, names and environment come from template.yaml, never hand-copied."""

from __future__ import annotations

import os

import boto3
import pytest
from hypothesis import settings
from segctl.provision import dev_secret_values, provision
from segctl.template import Template
from segmentation import bootstrap
from support import TEMPLATE, Api, Outbox

# CI explores the same examples every run (a red build is reproducible); developers get fresh ones.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture
def aws(monkeypatch):
    """An in-process moto AWS holding everything template.yaml declares, with the functions' env set.

    Yields the Template, whose names resolve to the resources created.
    """
    from moto import mock_aws

    for var in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "WARNING")
    with mock_aws():
        template = Template(TEMPLATE)
        provision(template, boto3.session.Session(region_name="us-east-1"), dev_secret_values({}))
        template.parameters["LogLevel"] = "WARNING"
        for fn in template.functions():
            for key, value in template.environment(fn).items():
                monkeypatch.setenv(key, value)
        bootstrap.reset()
        yield template
        bootstrap.reset()


@pytest.fixture
def outbox(aws) -> Outbox:
    return Outbox(aws)


@pytest.fixture
def api(aws) -> Api:
    return Api(aws)
