"""The bench's DynamoDB bill (bench/cost.py) follows DynamoDB's billing rules: the cost figures in
`make bench`, the README and docs/architecture.md rest on it, so its rules are checked here on moto
with template.yaml's ProfilesTable (and its keys-only DueIndex)."""

from __future__ import annotations

import sys

import boto3
import pytest
from moto import mock_aws
from segctl.provision import create_tables
from support import ROOT, TEMPLATE

sys.path.insert(0, str(ROOT / "bench"))
from cost import WriteMeter, item_size, units  # noqa: E402


def test_item_sizes_follow_dynamodbs_rules():
    assert item_size({"id": {"S": "abc"}}) == 2 + 3  # name + UTF-8 bytes
    assert item_size({"n": {"N": "12345"}}) == 1 + 4  # about one byte per two digits, plus one
    assert item_size({"b": {"B": b"\x00" * 10}}) == 1 + 10
    assert item_size({"f": {"BOOL": True}}) == 1 + 1
    assert item_size({"l": {"L": [{"S": "ab"}, {"N": "1"}]}}) == 1 + 3 + (1 + 2) + (1 + 2)
    assert item_size({"é": {"S": "é"}}) == 2 + 2  # UTF-8 bytes, not characters
    assert (units(1), units(1024), units(1025), units(0)) == (1, 1, 2, 0)


@pytest.fixture
def meter(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    from segctl.template import Template

    template = Template(TEMPLATE)
    with mock_aws():
        client, raw = boto3.client("dynamodb"), boto3.client("dynamodb")
        create_tables(template, raw)
        yield WriteMeter(client, raw), client, template.physical_name("ProfilesTable")


def profile(pid: str, size: int, due: str | None = None) -> dict:
    item = {"profile_id": {"S": pid}, "state": {"B": b"x" * size}}
    if due is not None:
        item.update({"next_due_at": {"N": due}, "due_shard": {"S": "1"}})
    return item


def test_writes_cost_a_unit_per_started_kb_of_the_larger_item_and_transactions_twice(meter):
    meter, client, table = meter
    client.put_item(TableName=table, Item=profile("p1", 900))  # ~0.9 KB
    assert meter.wcu["event"] == 1
    client.put_item(TableName=table, Item=profile("p1", 100))  # smaller after: billed on the larger before
    assert meter.wcu["event"] == 2
    client.put_item(TableName=table, Item=profile("p2", 1500))
    assert meter.wcu["event"] == 4
    client.transact_write_items(TransactItems=[{"Put": {"TableName": table, "Item": profile("p3", 1500)}},
                                               {"Put": {"TableName": table, "Item": profile("p4", 10)}}])
    assert meter.wcu["event"] == 4 + 2 * 2 + 2 * 1
    client.update_item(TableName=table, Key={"profile_id": {"S": "p2"}}, UpdateExpression="SET v = :v",
                       ExpressionAttributeValues={":v": {"N": "1"}})
    assert meter.wcu["event"] == 10 + 2  # an update is billed on the whole item
    assert meter.requests["event"] == 5 and meter.index_wcu["event"] == 0


def test_every_index_entry_written_is_counted_and_a_moved_key_costs_a_delete_too(meter):
    meter, client, table = meter
    client.put_item(TableName=table, Item=profile("p1", 1500, due="100"))
    assert (meter.wcu["event"], meter.index_wcu["event"]) == (2 + 1, 1)  # the item, and its keys-only entry
    client.put_item(TableName=table, Item=profile("p1", 1400, due="100"))
    assert meter.index_wcu["event"] == 1  # the entry did not change: no index write
    client.put_item(TableName=table, Item=profile("p1", 1400, due="200"))
    assert meter.index_wcu["event"] == 1 + 2  # moved: the old entry deleted, the new one put
    client.put_item(TableName=table, Item=profile("p1", 1400))
    assert meter.index_wcu["event"] == 3 + 1  # left the index: its entry deleted
    assert meter.wcu["event"] == 3 + 2 + (2 + 2) + (2 + 1)


def test_reads_cost_half_a_unit_per_4_kb_eventually_and_a_unit_strongly(meter):
    meter, client, table = meter
    client.put_item(TableName=table, Item=profile("p1", 5000))
    meter.phase = "read"
    client.get_item(TableName=table, Key={"profile_id": {"S": "p1"}})
    assert meter.rru["read"] == 0.5 * 2
    client.get_item(TableName=table, Key={"profile_id": {"S": "p1"}}, ConsistentRead=True)
    assert meter.rru["read"] == 1 + 2


def test_the_cost_model_prices_each_service_from_the_dated_list_prices():
    import bench

    usd = bench.cost_model(wcu=4.0, rru=2.0, changes=0.0, profile_cpu_s=0.001)
    assert usd["dynamodb"] == pytest.approx(4 * 0.625 + 2 * 0.125)
    assert usd["eventbridge"] == pytest.approx(1.0) and usd["http_api"] == pytest.approx(1.0)
    more = bench.cost_model(wcu=4.0, rru=2.0, changes=1.0, profile_cpu_s=0.001)
    assert more["eventbridge"] == pytest.approx(2.0)  # each membership change is one more event on the bus
    figures = bench.cost_model(wcu=4.0, rru=2.0, changes=0.0, profile_cpu_s=0.001, metric_events=1.0)
    assert figures["eventbridge"] == pytest.approx(2.0)  # a SegmentMetrics event on the bus
    assert figures["sqs"] == pytest.approx(usd["sqs"] + 1.02 * 0.40)  # ...sent into MetricsQueue, read in batches


def test_the_cost_bench_prints_parts_that_add_up_to_its_totals(monkeypatch, capsys):
    """`make bench`'s cost figures, on a few customers of the same mix: the all-in write units are
    the sum of the event path, the sweep and the webhook path, each of those the sum of its tables,
    the dollars the sum of the services; and the profile path stays within its request budget."""
    import bench

    for name, value in {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)  # the bench sets these; restored after
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setattr(bench, "COST_CUSTOMERS", 4)
    bench.ddb_cost()
    figures = {}
    for line in capsys.readouterr().out.splitlines():
        name, _, rest = line.partition(": ")
        figures[name] = float(rest.split()[0])
    phases = {p: figures[f"ddb_wcu_per_event_{p}"] for p in ("event", "sweep", "webhook")}
    assert figures["ddb_wcu_per_event_all_in"] == pytest.approx(sum(phases.values()), abs=0.002)
    for phase in ("event", "sweep"):
        tables = [v for k, v in figures.items() if k.startswith(f"ddb_wcu_per_event_{phase}_")]
        assert tables and sum(tables) == pytest.approx(phases[phase], abs=0.004)
    assert phases["event"] > 1 and phases["webhook"] == 0  # a profile write per event at least; no webhook table
    assert figures["ddb_wcu_per_webhook_duplicate_answer"] == pytest.approx(1.0)
    assert figures["ddb_requests_per_event_profile_path"] <= 3
    services = [v for k, v in figures.items() if k.startswith("usd_per_million_events_")]
    assert len(services) == 6 and figures["usd_per_million_events"] == pytest.approx(sum(services), abs=0.003)
