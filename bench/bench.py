"""`make bench`: figures for design.md §5, one `name: value unit` line each.

Times on this machine are noisy, so each timing also comes as a ratio to a
reference measured in the same run.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from segctl.template import Template  # noqa: E402

TEMPLATE = Template(ROOT / "template.yaml")
RUNS = int(os.environ.get("BENCH_IMPORT_RUNS", "7"))


def report(name: str, value: float, unit: str) -> None:
    print(f"{name}: {value:.3f} {unit}" if isinstance(value, float) else f"{name}: {value} {unit}", flush=True)


def _time_subprocess(code: str, path: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "AWS_DEFAULT_REGION": "us-east-1",
           "PYTHONDONTWRITEBYTECODE": "0"}
    env.update({k: "x" for k in ("PROFILES_TABLE", "ALIASES_TABLE", "MEMBERSHIPS_TABLE", "IDEMPOTENCY_TABLE",
                                 "EVENT_BUS_NAME", "WEBHOOK_SECRET_ARN")})
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


#: What each handler builds on its first invocation (clients, adapters): part of a real cold start.
FIRST_USE = {
    "webhook_handler": "bootstrap.webhook_ingest()",
    "profile_handler": "bootstrap.profile_service()",
    "api_handler": "bootstrap.repository(); bootstrap.evaluator()",
}


def cold_imports() -> None:
    """Cold start of each handler in a fresh interpreter: import the module and build what its first
    invocation builds (boto3 clients, adapters), next to a bare `import boto3; boto3.client("dynamodb")`."""
    bare = "import time; t=time.perf_counter(); import boto3; boto3.client('dynamodb'); print(time.perf_counter()-t)"
    layer = str(ROOT / "layers" / "segmentation")
    # Warm the bytecode caches first: Lambda ships compiled modules too.
    _time_subprocess(bare, [layer])
    reference = statistics.median(_time_subprocess(bare, [layer]) for _ in range(RUNS))
    report("cold_import_bare_boto3_client_ms", reference * 1000, "ms")
    for spec in sorted(TEMPLATE.functions().values(), key=lambda s: s.module):
        code = (f"import time; t=time.perf_counter(); import {spec.module}; from segmentation import bootstrap; "
                f"{FIRST_USE[spec.module]}; print(time.perf_counter()-t)")
        _time_subprocess(code, [spec.code_uri, layer])
        took = statistics.median(_time_subprocess(code, [spec.code_uri, layer]) for _ in range(RUNS))
        report(f"cold_start_{spec.module}_ms", took * 1000, "ms")
        report(f"cold_start_{spec.module}_vs_bare_boto3", took / reference, "ratio")


def requests_per_event() -> None:
    """DynamoDB requests the profile path makes per event, on moto, with tables from template.yaml."""
    from datetime import UTC, datetime, timedelta

    import boto3
    from moto import mock_aws
    from segctl.provision import create_tables
    from segmentation.adapters import shopify
    from segmentation.adapters.repository import DynamoDBProfileRepository
    from segmentation.domain.engine import default_evaluator
    from segmentation.service.profiles import ProfileService

    os.environ.update({"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"})
    os.environ.pop("AWS_ENDPOINT_URL", None)
    now = datetime.now(UTC).replace(microsecond=0)

    def checkout(i: int, hours_ago: float):
        at = (now - timedelta(hours=hours_ago)).isoformat()
        payload = {"token": f"co-{i}", "email": "bench@example.com", "created_at": at, "updated_at": at,
                   "customer": {"id": 1}}
        return shopify.normalise("checkouts/create", "bench", payload, "k").events[0]

    with mock_aws():
        client = boto3.client("dynamodb")
        create_tables(TEMPLATE, client)
        calls: list[str] = []
        client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
        repo = DynamoDBProfileRepository(client, TEMPLATE.physical_name("ProfilesTable"),
                                         TEMPLATE.physical_name("AliasesTable"), TEMPLATE.physical_name("MembershipsTable"))

        class Null:
            def publish_changes(self, changes):
                pass

        service = ProfileService(repo, default_evaluator(), Null(), clock=lambda: int(time.time()))
        service.apply(checkout(0, 24 * 8))  # creates the profile
        no_change, with_change = [], []
        for i in range(1, 201):
            calls.clear()
            changes = service.apply(checkout(i, 24 * 8 if i % 10 else 2))
            (with_change if changes else no_change).append(len(calls))
        report("ddb_requests_per_event_no_change", statistics.mean(no_change), "requests")
        report("ddb_requests_per_event_no_change_max", max(no_change), "requests")
        if with_change:
            report("ddb_requests_per_event_with_change", statistics.mean(with_change), "requests")


def segment_eval() -> None:
    from segmentation.domain.engine import default_evaluator
    from segmentation.domain.profile import CheckoutRecord, OrderRecord, Profile

    now = int(time.time())
    catalog = default_evaluator()
    profiles = []
    for p in range(500):
        prof = Profile(profile_id=str(p))
        for o in range(p % 12):
            prof.orders[str(o)] = OrderRecord(at=now - o * 86400 * 9, total="80.00", status="placed", updated=now)
        for c in range(p % 3):
            prof.checkouts[str(c)] = CheckoutRecord(started=now - c * 7200 - 600, updated=now)
        profiles.append(prof)
    samples = []
    for prof in profiles:
        t = time.perf_counter()
        for _ in range(20):
            catalog.evaluate(prof, now)
        samples.append((time.perf_counter() - t) / 20)
    report("segment_eval_us_per_profile", statistics.median(samples) * 1e6, "us")


if __name__ == "__main__":
    segment_eval()
    requests_per_event()
    cold_imports()
