"""Bad input to any `segctl` subcommand: one message that says what was wrong and what to do, exit
code 2, and no traceback (docs/cli.md, "Exit codes")."""

from __future__ import annotations

import json
import os
import re

import pytest
from segctl.checks import parameter_problem
from segctl.cli import main
from segctl.runtime import LocalStack
from segctl.template import Template
from segmentation import bootstrap
from support import ROOT, TEMPLATE

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing answers


@pytest.fixture(scope="module")
def endpoint():
    """A moto server holding template.yaml's resources, as `segctl local start-api` runs one."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def files(tmp_path):
    """Bad inputs of every kind."""
    (tmp_path / "bad.json").write_text('{"Records": [')
    (tmp_path / "latin1.json").write_bytes(b'{"a": "\xff"}')
    (tmp_path / "array.json").write_text("[]")
    (tmp_path / "dir.json").mkdir()
    (tmp_path / "catalog.yaml").write_text("segments: [\n")
    (tmp_path / "stream.json").write_text(json.dumps({"shop": "x"}))
    return tmp_path


W = ["local", "invoke", "WebhookFunction", "--event"]
P = ["local", "invoke", "ProfileFunction", "--event"]

#: (id, argv ({d}: the bad files' folder, {events}: events/), environment, what the message says)
CASES = [
    ("invoke-missing-event", [*W, "{d}/nope.json"], {}, r"event file .*nope.json not found; give a JSON Lambda event"),
    ("invoke-unreadable-event", [*W, "{d}/dir.json"], {}, r"cannot read the event file .*dir.json: Is a directory"),
    ("invoke-bad-json", [*W, "{d}/bad.json"], {}, r"event file .*bad.json is not JSON"),
    ("invoke-not-utf8", [*W, "{d}/latin1.json"], {}, r"event file .*latin1.json is not JSON"),
    ("invoke-not-an-object", [*W, "{d}/array.json"], {}, r"a Lambda event is a JSON object, not a JSON list"),
    ("invoke-provider-payload", [*W, "{events}/klaviyo/opened.json"], {},
     r"opened.json is not an event WebhookFunction receives: it takes an API Gateway HTTP API event.*"
     r"sent over HTTP to `segctl local start-api`"),
    ("invoke-wrong-source", [*P, "{events}/shopify/orders-create.json"], {},
     r"not an event ProfileFunction receives: it takes an SQS batch"),
    ("invoke-unknown-function", ["local", "invoke", "Nope", "--event", "{events}/shopify/orders-create.json"], {},
     r"no function 'Nope' in .*; functions: WebhookFunction"),
    ("invoke-bad-catalog", [*P, "{events}/profile/sqs-customer-event.json"], {"CATALOG_FILE": "{d}/catalog.yaml"},
     r"CATALOG_FILE=.*catalog.yaml: the catalog is not valid:\n.*not valid YAML.*\nfix it \(`segctl segments validate"),
    ("invoke-missing-destinations", [*P, "{events}/profile/sqs-customer-event.json"],
     {"DESTINATIONS_FILE": "{d}/nope.yaml"}, r"DESTINATIONS_FILE=.*nope.yaml: cannot read it \(No such file"),
    ("start-api-port-0", ["local", "start-api", "--port", "0"], {}, r"--port: 0 is out of range: give a TCP port from 1 to 65535"),
    ("start-api-port-high", ["local", "start-api", "--port", "70000"], {}, r"--port: 70000 is out of range"),
    ("start-api-port-text", ["local", "start-api", "--port", "http"], {}, r"--port: 'http' is not a whole number"),
    ("start-api-parameter", ["local", "start-api", "--parameter-overrides", "Nope=1"], {},
     r"give Name=Value with a parameter of template.yaml"),
    ("start-api-override-range", ["local", "start-api", "--parameter-overrides", "DueShards=0"], {},
     r"'DueShards=0': DueShards must be from 1 to 1000"),
    ("start-api-override-number", ["local", "start-api", "--parameter-overrides", "EspSyncBatchingWindow=soon"], {},
     r"EspSyncBatchingWindow must be a number"),
    ("start-api-log-level", ["local", "start-api", "--log-level", "verbose"], {},
     r"--log-level 'verbose': LogLevel must be one of DEBUG, INFO, WARNING, ERROR"),
    ("invoke-log-level", [*P, "{events}/profile/sqs-customer-event.json", "--log-level", "TRACE"], {},
     r"--log-level 'TRACE': LogLevel must be one of"),
    ("missing-template", ["--template", "{d}/nope.yaml", "sweep"], {}, r"nope.yaml not found; run from the project root"),
    ("demo-missing-stream", ["demo", "--stream", "{d}/nope.json"], {}, r"--stream .*nope.json: no such file"),
    ("demo-bad-stream", ["demo", "--stream", "{d}/bad.json"], {}, r"--stream .*bad.json is not JSON"),
    ("demo-not-a-stream", ["demo", "--stream", "{d}/stream.json"], {}, r"is not a demo stream: it needs a \"deliveries\" list"),
    ("backfill-segments-0", ["backfill", "--segments", "0"], {}, r"--segments: 0 is out of range: give a count from 1 to 64"),
    ("backfill-segments-negative", ["backfill", "--segments", "-3"], {}, r"--segments: -3 is out of range"),
    ("backfill-segments-many", ["backfill", "--segments", "65"], {}, r"--segments: 65 is out of range"),
    ("backfill-no-endpoint", ["backfill"], {}, r"set AWS_ENDPOINT_URL to the endpoint `segctl local start-api` prints"),
    ("backfill-unreachable", ["backfill"], {"AWS_ENDPOINT_URL": UNREACHABLE},
     r"nothing answers at AWS_ENDPOINT_URL=http://127.0.0.1:9: start `segctl local start-api`"),
    ("backfill-bad-catalog", ["backfill"], {"AWS_ENDPOINT_URL": UNREACHABLE, "CATALOG_FILE": "{d}/catalog.yaml"},
     r"CATALOG_FILE=.*: the catalog is not valid"),
    ("sweep-bad-time", ["sweep", "--at", "tomorrow"], {"AWS_ENDPOINT_URL": UNREACHABLE},
     r"--at 'tomorrow': give now, \+30d, \+2h, \+90m or an ISO time"),
    ("sweep-unreachable", ["sweep"], {"AWS_ENDPOINT_URL": UNREACHABLE}, r"nothing answers at AWS_ENDPOINT_URL"),
    ("reconcile-no-endpoint", ["sync", "reconcile", "--destination", "x"], {}, r"set AWS_ENDPOINT_URL .* or pass --stack"),
    ("reconcile-no-destinations", ["sync", "reconcile", "--destination", "x"], {"AWS_ENDPOINT_URL": UNREACHABLE},
     r"set DESTINATIONS_FILE"),
    ("dlq-unknown-queue", ["dlq", "list", "--queue", "ProfileQueue"], {}, r"not a dead-letter queue of template.yaml; one of"),
    ("dlq-max-0", ["dlq", "replay", "--queue", "profile", "--max", "0"], {}, r"--max: 0 is out of range: give a count 1 or more"),
    ("dlq-no-endpoint", ["dlq", "list", "--queue", "profile"], {}, r"set AWS_ENDPOINT_URL .* or pass --stack NAME"),
    ("dlq-unreachable", ["dlq", "list", "--queue", "profile"], {"AWS_ENDPOINT_URL": UNREACHABLE},
     r"cannot reach the queues of AWS_ENDPOINT_URL=http://127.0.0.1:9"),
    ("preview-sample", ["segments", "preview", "{d}/catalog.yaml", "--sample", "101"], {}, r"--sample: 101 is out of range"),
    ("explain-unreachable", ["segments", "explain", "--email", "a@example.com", "--url", UNREACHABLE], {},
     r"cannot reach http://127.0.0.1:9 .*start `segctl local start-api` or pass --url"),
    ("destinations-missing", ["destinations", "validate", "{d}/nope.yaml"], {}, r"nope.yaml: cannot read the destinations file"),
    ("destinations-bad-catalog", ["destinations", "validate", "{d}/nope.yaml", "--catalog", "{d}/catalog.yaml"], {},
     r"the catalog is not valid"),
    ("import-nothing", ["import", "csv"], {}, r"give --orders FILE and/or --customers FILE"),
    ("import-csv-missing", ["import", "csv", "--orders", "{d}/nope.csv"], {"AWS_ENDPOINT_URL": "{endpoint}"},
     r"nope.csv: no such file"),
    ("import-shopify-missing", ["import", "shopify", "--shop", "north-wind", "--file", "{d}/nope.jsonl"],
     {"AWS_ENDPOINT_URL": "{endpoint}"}, r"no such file"),
    ("import-shopify-shop", ["import", "shopify", "--shop", "shop.example.com", "--file", "{d}/nope.jsonl"],
     {"AWS_ENDPOINT_URL": "{endpoint}"}, r"--shop must be the shop's <name>.myshopify.com domain"),
    ("import-woocommerce-missing", ["import", "woocommerce", "--site", "https://shop.example.com", "{d}/nope.json"],
     {"AWS_ENDPOINT_URL": "{endpoint}"}, r"nope.json: no such file"),
    ("import-woocommerce-not-rest", ["import", "woocommerce", "--site", "https://shop.example.com", "{d}/stream.json"],
     {"AWS_ENDPOINT_URL": "{endpoint}"}, r"not a file of WooCommerce REST orders or customers"),
    ("import-klaviyo-missing", ["import", "klaviyo", "{d}/nope.csv", "--account", "pk_x"],
     {"AWS_ENDPOINT_URL": "{endpoint}"}, r"nope.csv: no such file"),
    ("import-mailchimp-status", ["import", "mailchimp", "{d}/nope.csv", "--account", "a1", "--status", "gone"], {},
     r"--status: invalid choice: 'gone'"),
]


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(("argv", "env", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_message_and_exit_code_2(request, argv, env, message, files, monkeypatch, capsys):
    values = {"d": str(files), "events": str(ROOT / "events")}
    if any("{endpoint}" in v for v in env.values()):
        values["endpoint"] = request.getfixturevalue("endpoint")
    monkeypatch.chdir(ROOT)
    for var in ("AWS_ENDPOINT_URL", "CATALOG_FILE", "DESTINATIONS_FILE", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "local")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "local")
    for var, value in env.items():
        monkeypatch.setenv(var, value.format(**values))
    if argv[:2] == ["local", "start-api"]:  # a check that let it start would serve until killed
        monkeypatch.setattr(LocalStack, "start", lambda self: pytest.fail("start-api started"))
    saved = dict(os.environ)  # the local runner sets the functions' environment: put it back
    try:
        code, out, err = run([a.format(**values) for a in argv], capsys)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        bootstrap.reset()
    assert code == 2, (out, err)
    assert re.search(message, err, re.S), err
    assert "Traceback" not in out + err and err.count("segctl") >= 1


def test_an_unexpected_failure_is_one_line_and_exit_code_1_and_segctl_debug_shows_the_traceback(monkeypatch, capsys):
    from segctl import timecmds

    def broken(template, at):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(timecmds, "sweep", broken)
    monkeypatch.delenv("SEGCTL_DEBUG", raising=False)
    code, out, err = run(["sweep"], capsys)
    assert (code, err) == (1, "segctl: sweep failed: RuntimeError: the disk is full (SEGCTL_DEBUG=1 shows the traceback)\n")
    monkeypatch.setenv("SEGCTL_DEBUG", "1")
    with pytest.raises(RuntimeError, match="the disk is full"):
        main(["sweep"])


def test_a_catalog_that_does_not_parse_is_reported_by_segments_validate_with_its_line(files, capsys):
    """`segments validate` answers whether a catalog is valid: a file that is not is its answer, exit 1."""
    code, out, err = run(["segments", "validate", str(files / "catalog.yaml")], capsys)
    assert code == 1 and "the catalog is not valid" in err and "line 2" in err and "Traceback" not in err


def number_parameters():
    doc = Template(TEMPLATE).doc["Parameters"]
    return sorted(n for n, p in doc.items() if p.get("Type") == "Number" and ("MinValue" in p or "MaxValue" in p))


@pytest.mark.parametrize("name", number_parameters())
def test_parameter_overrides_are_held_to_the_template_s_bounds(name):
    """What CloudFormation would refuse at deploy time, start-api refuses too (template.yaml's
    MinValue/MaxValue), and the bounds themselves pass."""
    template = Template(TEMPLATE)
    spec = template.doc["Parameters"][name]
    for bound, outside in (("MinValue", -1), ("MaxValue", 1)):
        if bound in spec:
            assert parameter_problem(template, name, str(spec[bound])) is None
            assert "must be from" in parameter_problem(template, name, str(spec[bound] + outside))
    assert parameter_problem(template, name, "many") == f"{name} must be a number"
