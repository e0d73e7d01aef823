"""docs/deploy.md names what template.yaml declares: its outputs, its parameters, the resources a
teardown leaves behind, and one row per key of the webhook secret. Read from both files, so renaming
one without the other fails here."""

from __future__ import annotations

import re

from segctl.provision import dev_secret_values
from segctl.template import load_template
from support import ROOT, TEMPLATE

DOC = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
TEMPLATE_DOC = load_template(TEMPLATE)


def table(header: str) -> list[str]:
    """The first cells of the rows of the table whose header row starts with ``header``."""
    start = DOC.index(header)
    rows = DOC[start:].split("\n\n", 1)[0].splitlines()[2:]
    return [row.split("|")[1] for row in rows]


def names(cells: list[str]) -> set[str]:
    return {name for cell in cells for name in re.findall(r"`([^`]+)`", cell)}


def test_every_documented_output_is_an_output_of_the_template():
    documented = names(table("| output |"))
    assert documented and documented <= set(TEMPLATE_DOC["Outputs"])


def test_every_documented_parameter_is_a_parameter_of_the_template():
    documented = names(table("| parameter |"))
    assert documented and documented <= set(TEMPLATE_DOC["Parameters"])


def test_the_teardown_names_exactly_the_retained_data_resources():
    retained_line = re.search(r"`DeletionPolicy: Retain`: (.*?)\)", DOC, re.S)
    assert retained_line, "deploy.md must list the retained resources by logical id"
    documented = set(re.findall(r"`(\w+)`", retained_line.group(1)))
    retained = {name for name, resource in TEMPLATE_DOC["Resources"].items()
                if resource.get("DeletionPolicy") == "Retain"
                and resource["Type"] in ("AWS::DynamoDB::Table", "AWS::S3::Bucket")}
    assert documented == retained


def test_the_secret_table_has_a_row_for_every_webhook_secret_key():
    documented = {name for name in names(table("| key |")) if ":" not in name}
    assert documented == set(dev_secret_values({}))


def test_the_klaviyo_webhook_command_is_a_valid_create_webhook_request():
    """The body deploy.md sends to create Klaviyo's system webhook, checked against Klaviyo's published
    OpenAPI document (tests/contracts/), with the topics the Klaviyo adapter uses."""
    import json

    from openapi_core import Config, OpenAPI
    from openapi_core.testing import MockRequest
    from segmentation.sources.klaviyo import USED_TOPICS

    command = re.search(r"curl -s https://a\.klaviyo\.com(/api/webhooks) (.*?)-d '(\{.*?)'\n```", DOC, re.S)
    assert command, "deploy.md: the Klaviyo curl command"
    path, headers, raw = command.groups()
    body = json.loads(raw.replace("'\"$API\"'", "https://abc.execute-api.us-east-1.amazonaws.com")
                         .replace("'\"$KLAVIYO_WEBHOOK_SECRET\"'", "a-secret-of-sixteen-plus"))
    revision = re.search(r"-H 'revision: ([\d-]+)'", headers).group(1)
    content_type = re.search(r"-H 'Content-Type: ([^']+)'", headers).group(1)
    contract = ROOT / "tests" / "contracts" / f"klaviyo-openapi-stable-{revision}.json"
    spec = OpenAPI.from_dict(json.loads(contract.read_text()), config=Config(spec_validator_cls=None))
    spec.validate_request(MockRequest("https://a.klaviyo.com", "post", path, data=json.dumps(body).encode(),
                                      headers={"revision": revision, "Authorization": "Klaviyo-API-Key pk_x"},
                                      content_type=content_type))
    assert body["data"]["attributes"]["endpoint_url"].endswith("/webhooks/klaviyo")
    topics = {t["id"].removeprefix("event:klaviyo.") for t in body["data"]["relationships"]["webhook-topics"]["data"]}
    assert topics == set(USED_TOPICS)
