"""`make bench`: figures for the targets of docs/contracts.md#targets, one `name: value unit` line each.

Times on this machine are noisy, so each timing also comes as a ratio to a
reference measured in the same run.
"""

from __future__ import annotations

import hashlib
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


def _time_subprocess(code: str, path: list[str], function: str | None = None) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path), "AWS_DEFAULT_REGION": "us-east-1",
           "PYTHONDONTWRITEBYTECODE": "0"}
    if function:  # the function's own environment, as template.yaml sets it
        env.update(TEMPLATE.environment(function))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


#: What each handler builds on its first invocation (clients, adapters): part of a real cold start.
FIRST_USE = {
    "webhook_handler": "bootstrap.webhook_ingest()",
    "profile_handler": "bootstrap.profile_service()",
    "api_handler": "bootstrap.repository(); bootstrap.evaluator()",
    "sweep_handler": "bootstrap.sweep()",
    "backfill_handler": "bootstrap.backfill()",
    # the sync builds its clients on the first batch: the modules they need are part of the start
    "esp_sync_handler": ("bootstrap.esp_sync(); import segmentation.infra.esp.klaviyo, "
                         "segmentation.infra.esp.mailchimp, segmentation.infra.esp.webhook"),
    "reconcile_handler": "bootstrap.esp_reconcile()",
    "import_handler": "bootstrap.import_jobs()",
    "metrics_handler": "bootstrap.metrics_store()",
}


def cold_imports() -> None:
    """Cold start of each handler in a fresh interpreter: import the module and build what its first
    invocation builds (boto3 clients, adapters), next to a bare `import boto3; boto3.client("dynamodb")`.

    Side by side and interleaved: each round times every function right next to its own run of the
    reference (the order flipped every other round), and the ratio is taken per pair, then the
    median over the rounds; a machine that slows down for a while slows both sides of a pair."""
    bare = "import time; t=time.perf_counter(); import boto3; boto3.client('dynamodb'); print(time.perf_counter()-t)"
    layer = str(ROOT / "layers" / "segmentation")
    specs = sorted(TEMPLATE.functions().values(), key=lambda s: s.module)
    codes = {spec.logical_id: (f"import time; t=time.perf_counter(); import {spec.module}; from segmentation import "
                               f"bootstrap; {FIRST_USE[spec.module]}; print(time.perf_counter()-t)") for spec in specs}
    # Warm the bytecode caches first: Lambda ships compiled modules too.
    _time_subprocess(bare, [layer])
    for spec in specs:
        _time_subprocess(codes[spec.logical_id], [spec.code_uri, layer], spec.logical_id)
    ratios: dict[str, list[float]] = {s.logical_id: [] for s in specs}
    times: dict[str, list[float]] = {s.logical_id: [] for s in specs}
    references: list[float] = []
    for round_ in range(RUNS):
        for spec in specs:
            pair = [lambda: _time_subprocess(bare, [layer]),
                    lambda s=spec: _time_subprocess(codes[s.logical_id], [s.code_uri, layer], s.logical_id)]
            if round_ % 2:
                pair.reverse()
            first, second = pair[0](), pair[1]()
            reference, took = (second, first) if round_ % 2 else (first, second)
            references.append(reference)
            times[spec.logical_id].append(took)
            ratios[spec.logical_id].append(took / reference)
    # The floor: what any function built on the stack the project mandates (boto3, pydantic,
    # Powertools' logger) pays before a line of our code, against the same reference.
    floor = ("import time; t=time.perf_counter(); import boto3; boto3.client('dynamodb'); "
             "from pydantic import BaseModel\nclass A(BaseModel):\n    x: int\n    y: str | None = None\n"
             "A(x=1); from aws_lambda_powertools import Logger; Logger(service='floor'); print(time.perf_counter()-t)")
    floors = []
    for round_ in range(RUNS):  # interleaved, the order flipped every other round, as above
        if round_ % 2:
            took = _time_subprocess(floor, [layer])
            reference = _time_subprocess(bare, [layer])
        else:
            reference = _time_subprocess(bare, [layer])
            took = _time_subprocess(floor, [layer])
        floors.append(took / reference)
    report("cold_import_bare_boto3_client_ms", statistics.median(references) * 1000, "ms")
    report("cold_start_floor_ratio", statistics.median(floors), "ratio")
    for spec in specs:
        ratio = statistics.median(ratios[spec.logical_id])
        report(f"cold_start_{spec.module}_ms", statistics.median(times[spec.logical_id]) * 1000, "ms")
        report(f"cold_start_ratio_{spec.logical_id}", ratio, "ratio")
        if spec.logical_id == "EspSyncFunction":
            report("esp_sync_cold_start_ratio", ratio, "ratio")


def requests_per_event() -> None:
    """DynamoDB requests the profile path makes per event, on moto, with tables from template.yaml."""
    from datetime import UTC, datetime, timedelta

    import boto3
    from moto import mock_aws
    from segctl.provision import create_tables
    from segmentation.domain.evaluation import default_evaluator
    from segmentation.infra.profile_store import DynamoDBProfileStore
    from segmentation.service.profiles import ProfileService
    from segmentation.sources import shopify

    os.environ.update({"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"})
    os.environ.pop("AWS_ENDPOINT_URL", None)
    now = datetime.now(UTC).replace(microsecond=0)

    def checkout(i: int, hours_ago: float):
        at = (now - timedelta(hours=hours_ago)).isoformat()
        payload = {"token": f"co-{i}", "email": "bench@example.com", "created_at": at, "updated_at": at,
                   "customer": {"id": 1}, "completed_at": None}
        return shopify.normalise("checkouts/create", "bench", payload, "k").events[0]

    with mock_aws():
        client = boto3.client("dynamodb")
        create_tables(TEMPLATE, client)
        calls: list[str] = []
        client.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))
        repo = DynamoDBProfileStore(client, TEMPLATE.physical_name("ProfilesTable"),
                                    TEMPLATE.physical_name("AliasesTable"), TEMPLATE.physical_name("MembershipsTable"),
                                    history_table=TEMPLATE.physical_name("HistoryTable"))

        class Null:
            def publish_changes(self, changes):
                pass

            def publish_metrics(self, profile_id, cause, facts):
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


def _stream(n: int, span_days: float, seed: int = 7, categories: int = 20, orders: bool = True):
    """A realistic mix of ``n`` events over ``span_days`` ending now (views, email, orders, checkouts)."""
    import random
    from datetime import UTC, datetime
    from decimal import Decimal

    from segmentation.domain.events import (
        BrowseProperties,
        CheckoutProperties,
        CustomerEvent,
        EmailProperties,
        EventType,
        Identity,
        LineItem,
        OrderProperties,
    )

    rnd = random.Random(seed)
    now = int(time.time())
    start = now - int(span_days * 86400)
    times = sorted(rnd.randint(start, now) for _ in range(n))
    ident = Identity(email="bench@example.com")
    cats = [f"category-{i}" for i in range(categories)]
    out = []
    for i, t in enumerate(times):
        at = datetime.fromtimestamp(t, UTC)
        r = rnd.random()
        if r < 0.30:
            type_, props = EventType.PAGE_VIEWED, BrowseProperties(url=f"/p/{i % 50}")
        elif r < 0.55:
            type_, props = EventType.PRODUCT_VIEWED, BrowseProperties(category=rnd.choice(cats), price=Decimal("49.90"))
        elif r < 0.60:
            type_, props = EventType.CATEGORY_VIEWED, BrowseProperties(category=rnd.choice(cats))
        elif r < 0.64:
            type_, props = EventType.PRODUCT_ADDED, BrowseProperties(category=rnd.choice(cats), price=Decimal("49.90"))
        elif r < 0.80:
            type_, props = EventType.EMAIL_DELIVERED, EmailProperties(message_id=f"msg-{i}")
        elif r < 0.92:
            type_, props = EventType.EMAIL_OPENED, EmailProperties(message_id=f"msg-{i - rnd.randint(1, 5)}")
        elif r < 0.96:
            type_, props = EventType.EMAIL_CLICKED, EmailProperties(message_id=f"msg-{i - rnd.randint(1, 5)}")
        elif r < 0.98 or not orders:
            type_, props = EventType.CHECKOUT, CheckoutProperties(checkout_id=f"co-{i}", updated_at=at)
        else:
            type_, props = EventType.ORDER, OrderProperties(order_id=f"o-{i}", total=Decimal("89.00"), updated_at=at,
                                                             items=[LineItem(category=rnd.choice(cats))])
        out.append(CustomerEvent(event_id=f"e{i}", source="bench", type=type_, occurred_at=at, identity=ident,
                                 properties=props))
    return out, now


def _fed(events, evaluator, evaluate_every: int = 0):
    from segmentation.domain.profile import Profile

    profile = Profile(profile_id="bench")
    for i, e in enumerate(events):
        t = int(e.occurred_at.timestamp())
        profile.apply(e, [])
        profile.prune(t, evaluator.retention)
        if evaluate_every and i % evaluate_every == 0:
            r = evaluator.evaluate(profile, t)
            profile.record_evaluation(set(r.segments), r.traits, r.next_due_at, t, e.event_id,
                                      catalog_version=evaluator.version)
    return profile


def segment_eval() -> None:
    """The whole default catalog plus 20 category segments, median over many profiles."""
    from segmentation.domain.evaluation import default_evaluator

    evaluator = default_evaluator()
    samples, family_sizes = [], []
    for seed in range(60):
        # Browsing across 20 categories and no order for 30 days: 20 category segments are live.
        events, now = _stream(150, 29, seed=seed, orders=False)
        profile = _fed(events, evaluator)
        result = evaluator.evaluate(profile, now)
        family_sizes.append(sum(1 for s in result.segments if s.startswith("category-browsers:")))
        t = time.perf_counter()
        for _ in range(20):
            evaluator.evaluate(profile, now)
        samples.append((time.perf_counter() - t) / 20)
    report("segment_eval_us_per_profile", statistics.median(samples) * 1e6, "us")
    report("segment_eval_category_segments_per_profile", statistics.median(family_sizes), "segments")


def preview_throughput() -> None:
    """POST /segments/preview: reading and judging one stored profile under an edited and the current
    definition (decode + two single-segment evaluations), and so how many profiles one call covers
    in the 25 s it gives itself; the DynamoDB scan is on top (about 1 MB, ~60 profiles, per read)."""
    from segmentation.domain.catalog import SegmentSpec
    from segmentation.domain.evaluation import CatalogEvaluator, default_evaluator
    from segmentation.infra.profile_store import decode_state, encode_state
    from segmentation.service.preview import candidate_catalog

    current = default_evaluator()
    spec = SegmentSpec.model_validate({"name": "At risk", "description": "edited",
                                       "when": {"all": [{"event": {"signal": "order_placed", "count": ">= 1"}},
                                                        {"last": {"signal": "activity", "more_than": "21d"}}]}})
    edited = CatalogEvaluator(candidate_catalog(current.catalog, "at-risk", spec))
    samples = []
    for seed in range(20):
        events, now = _stream(300, 60, seed=seed)
        blob = encode_state(_fed(events, current))
        t = time.perf_counter()
        for _ in range(10):
            p = decode_state(blob, "bench")
            edited.segment_members(p, now, "at-risk")
            current.segment_members(p, now, "at-risk")
        samples.append((time.perf_counter() - t) / 10)
    per = statistics.median(samples)
    report("preview_us_per_profile", per * 1e6, "us")
    report("preview_profiles_per_call", int(25 / per), "profiles")


def profile_size() -> None:
    """Serialized profile after 10,000 events: spread over a year, and all within 30 days (worst case)."""
    from segmentation.domain.evaluation import default_evaluator
    from segmentation.infra.profile_store import encode_state

    evaluator = default_evaluator()
    for name, span in (("profile_state_bytes_10k_events", 365), ("profile_state_bytes_10k_events_in_30d", 30)):
        events, now = _stream(10_000, span, seed=3)
        profile = _fed(events, evaluator, evaluate_every=500)
        r = evaluator.evaluate(profile, now)
        profile.record_evaluation(set(r.segments), r.traits, r.next_due_at, now, "final")
        report(name, len(encode_state(profile)), "bytes")


def oracle_ratio() -> None:
    """Incremental update + evaluation of one event on a 1,000-event history, over the brute-force oracle."""
    import oracle
    from segmentation.domain.evaluation import default_evaluator

    evaluator = default_evaluator()
    events, now = _stream(1001, 60, seed=11)
    history, last = events[:-1], events[-1]
    base = _fed(history, evaluator, evaluate_every=1)
    arrivals = [(e, int(e.occurred_at.timestamp())) for e in events]
    incremental, brute = [], []
    for _ in range(15):
        profile = base.model_copy(deep=True)
        t = time.perf_counter()
        profile.apply(last, [])
        profile.prune(now, evaluator.retention)
        r = evaluator.evaluate(profile, now)
        profile.record_evaluation(set(r.segments), r.traits, r.next_due_at, now, last.event_id,
                                  catalog_version=evaluator.version)
        incremental.append(time.perf_counter() - t)
        t = time.perf_counter()
        expected = oracle.segments(arrivals, now)
        oracle.traits(arrivals, now)
        brute.append(time.perf_counter() - t)
        assert expected == set(r.segments), (expected, r.segments)
    report("incremental_update_eval_us_1k_history", statistics.median(incremental) * 1e6, "us")
    report("oracle_recompute_us_1k_history", statistics.median(brute) * 1e6, "us")
    report("oracle_ratio", statistics.median(incremental) / statistics.median(brute), "ratio")


def _moto_profiles_env():
    os.environ.update({"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x", "AWS_DEFAULT_REGION": "us-east-1"})
    os.environ.pop("AWS_ENDPOINT_URL", None)


def sweep_reads() -> None:
    """Items the sweep reads for 20,000 profiles of which 200 are due, next to a full scan."""
    import random

    import boto3
    from moto import mock_aws
    from segctl.provision import create_tables
    from segmentation.domain.evaluation import default_evaluator
    from segmentation.infra.profile_store import DynamoDBProfileStore, encode_state
    from segmentation.service.sweep import Sweep

    _moto_profiles_env()
    evaluator = default_evaluator()
    with mock_aws():
        client = boto3.client("dynamodb")
        create_tables(TEMPLATE, client)
        repo = DynamoDBProfileStore(client, TEMPLATE.physical_name("ProfilesTable"),
                                    TEMPLATE.physical_name("AliasesTable"), TEMPLATE.physical_name("MembershipsTable"))
        events, now = _stream(40, 20, seed=5)
        template = _fed(events, evaluator, evaluate_every=1)
        rnd = random.Random(1)
        total, due = 20_000, 200
        due_ids = set(rnd.sample(range(total), due))
        items = []
        for i in range(total):
            template.profile_id = f"p{i:05d}"
            template.next_due_at = now - rnd.randint(1, 59) if i in due_ids else now + rnd.randint(3600, 90 * 86400)
            items.append({"PutRequest": {"Item": {
                "profile_id": {"S": template.profile_id}, "version": {"N": "1"},
                "state": {"B": encode_state(template)}, "next_due_at": {"N": str(template.next_due_at)},
                "due_shard": {"S": repo.due_shard(template.profile_id)}}}})
        for j in range(0, total, 25):
            client.batch_write_item(RequestItems={repo.profiles: items[j:j + 25]})
        read = {"items": 0, "writes": 0}

        def count(parsed, model, **_):
            if model.name in ("PutItem", "TransactWriteItems"):
                read["writes"] += 1
            if model.name in ("Query", "Scan"):
                read["items"] += len(parsed.get("Items", []))
            elif model.name == "GetItem" and parsed.get("Item"):
                read["items"] += 1
        client.meta.events.register("after-call.dynamodb.*", count)

        class Null:
            def publish_changes(self, changes):
                pass

            def publish_metrics(self, profile_id, cause, facts):
                pass

        result = Sweep(repo, evaluator, Null(), repo.due_shards).run(now)
        sweep_items, sweep_writes = read["items"], read["writes"]
        changed = len({c.profile_id for c in result.changes})
        read["items"] = 0
        start = None
        while True:
            kwargs = {"TableName": repo.profiles, "ProjectionExpression": "profile_id"}
            if start:
                kwargs["ExclusiveStartKey"] = start
            out = client.scan(**kwargs)
            start = out.get("LastEvaluatedKey")
            if not start:
                break
        scan_items = read["items"]
    assert result.evaluated == due, (result.evaluated, due)
    report("sweep_items_read_per_due_profile", sweep_items / due, "items")
    report("sweep_vs_scan_read_ratio", sweep_items / scan_items, "ratio")
    # One write per due profile, plus one per profile whose memberships changed (clearing its outbox
    # once published: what makes a crash between the write and the publish lose nothing).
    report("sweep_writes_per_due_profile", sweep_writes / due, "writes")
    report("sweep_profiles_with_changes", changed, "profiles")


def transition_lag() -> None:
    """Worst delay from a boundary to the membership change, running the sweep on each minute tick."""
    import random

    import boto3
    from moto import mock_aws
    from segctl.provision import create_tables
    from segmentation.domain.evaluation import default_evaluator
    from segmentation.domain.events import CustomerEvent, EventType, Identity, OrderProperties
    from segmentation.domain.profile import from_epoch
    from segmentation.infra.profile_store import DynamoDBProfileStore
    from segmentation.service.profiles import ProfileService
    from segmentation.service.sweep import Sweep

    _moto_profiles_env()
    evaluator = default_evaluator()
    rnd = random.Random(9)
    with mock_aws():
        client = boto3.client("dynamodb")
        create_tables(TEMPLATE, client)
        repo = DynamoDBProfileStore(client, TEMPLATE.physical_name("ProfilesTable"),
                                    TEMPLATE.physical_name("AliasesTable"), TEMPLATE.physical_name("MembershipsTable"))
        changes = []

        class Capture:
            def publish_changes(self, cs):
                changes.extend(cs)

            def publish_metrics(self, profile_id, cause, facts):
                pass

        clock = {"now": 0}
        service = ProfileService(repo, evaluator, Capture(), clock=lambda: clock["now"])
        start = 1_800_000_000
        boundaries = {}
        for i in range(60):  # purchases spread over 10 minutes: their 14-day exits too
            t = start + rnd.randint(0, 600)
            clock["now"] = t
            e = CustomerEvent(event_id=f"o{i}", source="bench", type=EventType.ORDER, occurred_at=from_epoch(t),
                              identity=Identity(email=f"lag{i}@example.com"),
                              properties=OrderProperties(order_id=f"o{i}", total="10", updated_at=from_epoch(t)))
            service.apply(e)
            pid = repo.find(f"email#lag{i}@example.com").profile_id
            boundaries[pid] = t + 14 * 86400  # leaves recent-buyers exactly then
        changes.clear()
        sweep = Sweep(repo, evaluator, Capture(), repo.due_shards)
        first_tick = (min(boundaries.values()) // 60) * 60
        for tick in range(first_tick, max(boundaries.values()) + 120, 60):  # rate(1 minute), on the minute
            sweep.run(tick)
        exits = {c.profile_id: c.at for c in changes if c.segment_id == "recent-buyers" and c.change == "exited"}
    assert set(exits) == set(boundaries), "every boundary was crossed"
    lags = [exits[p] - b for p, b in boundaries.items()]
    assert min(lags) >= 0
    report("transition_lag_s", max(lags), "s")
    report("transition_lag_mean_s", statistics.mean(lags), "s")



#: The mix of the write-unit bench (issue 13): per customer and day, the chance of each kind of event.
#: Browsing dominates, as on a real shop; about one customer in five orders in 30 days.
COST_MIX = (
    ("page_viewed", 0.45), ("product_viewed", 0.30), ("category_viewed", 0.08), ("product_added", 0.05),
    ("checkout", 0.02), ("order", 0.01), ("email_delivered", 0.25), ("email_opened", 0.10),
    ("email_clicked", 0.03),
)
COST_CUSTOMERS = int(os.environ.get("BENCH_COST_CUSTOMERS", "40"))
COST_DAYS = 30


def _cost_events(seed: int = 11):
    """A time-ordered 30-day stream for COST_CUSTOMERS customers, by COST_MIX (engaged customers
    browse on most days, others rarely)."""
    import random
    from datetime import UTC, datetime
    from decimal import Decimal

    from segmentation.domain.events import (
        BrowseProperties,
        CheckoutProperties,
        CustomerEvent,
        EmailProperties,
        EventType,
        Identity,
        LineItem,
        OrderProperties,
    )

    rnd = random.Random(seed)
    start = int(time.time()) - COST_DAYS * 86400
    cats = [f"category-{i}" for i in range(12)]
    out = []
    for c in range(COST_CUSTOMERS):
        activity = rnd.choice((0.2, 0.5, 1.0, 2.0))  # how active this customer is
        ident = Identity(email=f"cost{c}@example.com")
        for day in range(COST_DAYS):
            for kind, chance in COST_MIX:
                n = sum(rnd.random() < chance * activity for _ in range(2))
                for _ in range(n):
                    t = start + day * 86400 + rnd.randint(0, 86399)
                    at = datetime.fromtimestamp(t, UTC)
                    i = len(out)
                    type_ = EventType(kind)
                    if kind in ("page_viewed", "product_viewed", "category_viewed", "product_added"):
                        props = BrowseProperties(category=rnd.choice(cats), price=Decimal("49.90"), url=f"/p/{i % 40}")
                    elif kind.startswith("email"):
                        props = EmailProperties(message_id=f"m{c}-{day}")
                    elif kind == "checkout":
                        props = CheckoutProperties(checkout_id=f"co-{i}", updated_at=at)
                    else:
                        props = OrderProperties(order_id=f"o-{i}", total=Decimal("89.00"), updated_at=at,
                                                items=[LineItem(category=rnd.choice(cats))])
                    # ids as the adapters make them (32 hex characters): they fill the profile's
                    # recent-events memory, so their size is part of the item's
                    out.append(CustomerEvent(event_id=CustomerEvent.make_id("bench", c, i), source="bench",
                                             type=type_, occurred_at=at, identity=ident, properties=props))
    out.sort(key=lambda e: e.occurred_at)
    return out


def ddb_cost() -> None:
    """Write units per ingested event, all-in (issue 13): a realistic 30-day, time-ordered mix through
    the real profile path and an hourly sweep, on moto with template.yaml's tables, billed by
    DynamoDB's rules on the real item sizes (bench/cost.py). The webhook path keeps no dedupe table (a
    redelivery is recognised by the profile path), so it writes nothing for these events; its only
    DynamoDB calls are Shopify catalog facts (products, carts), which these events do not need.

    The figures are the defaults'. One more line, apart: what WebhookDuplicateAnswer=on would add,
    measured by putting each event's delivery through the real DeliveryLog on its own meter."""
    import boto3
    from cost import WriteMeter
    from moto import mock_aws
    from segctl.provision import create_tables
    from segmentation.domain.evaluation import default_evaluator
    from segmentation.infra.delivery_log import DynamoDBDeliveryLog
    from segmentation.infra.profile_store import DynamoDBProfileStore
    from segmentation.service.profiles import ProfileService
    from segmentation.service.sweep import Sweep

    _moto_profiles_env()
    events = _cost_events()
    with mock_aws():
        client, raw = boto3.client("dynamodb"), boto3.client("dynamodb")
        create_tables(TEMPLATE, raw)
        meter = WriteMeter(client, raw)
        repo = DynamoDBProfileStore(client, TEMPLATE.physical_name("ProfilesTable"),
                                    TEMPLATE.physical_name("AliasesTable"), TEMPLATE.physical_name("MembershipsTable"),
                                    due_shards=4, history_table=TEMPLATE.physical_name("HistoryTable"))

        class Count:
            changes = 0
            metric_events = 0  # SegmentMetrics entries: one per event that gave the figures something
            facts: list = []

            def publish_changes(self, cs):
                Count.changes += len([c for c in cs if c.segment_id])
                Count.facts += [("change", c) for c in cs if c.segment_id]

            def publish_metrics(self, profile_id, cause, facts):
                Count.metric_events += 1
                Count.facts += [("fact", f) for f in facts]

        clock = {"now": 0}
        evaluator = default_evaluator()
        service = ProfileService(repo, evaluator, Count(), clock=lambda: clock["now"])
        sweep = Sweep(repo, evaluator, Count(), repo.due_shards)
        next_sweep = (int(events[0].occurred_at.timestamp()) // 3600 + 1) * 3600
        evaluations, wasted, own_cpu = 0, 0, 0.0
        for e in events:
            t = int(e.occurred_at.timestamp())
            while next_sweep <= t:
                meter.phase = "sweep"
                report_ = sweep.run(next_sweep)
                evaluations += report_.evaluated
                # an evaluation that changed no membership of its profile was wasted
                wasted += report_.evaluated - len({c.profile_id for c in report_.changes if c.segment_id})
                next_sweep += 3600
            clock["now"] = t + 2
            meter.phase = "event"
            aws_before, started = meter.aws_seconds, time.perf_counter()
            service.apply(e)
            own_cpu += (time.perf_counter() - started) - (meter.aws_seconds - aws_before)
        # WebhookDuplicateAnswer=on (off by default, so not in the figures above): one conditional put
        # per accepted webhook, here one per event, through its own metered client
        on = Template(TEMPLATE.path, parameters={"WebhookDuplicateAnswer": "on"})
        create_tables(on, raw)
        deliveries_client = boto3.client("dynamodb")
        deliveries_meter = WriteMeter(deliveries_client, raw)
        deliveries = DynamoDBDeliveryLog(deliveries_client, on.physical_name("DeliveriesTable"))
        for e in events:
            t = int(e.occurred_at.timestamp())
            delivery = hashlib.sha256(f"bench#{e.shop}#{e.type}#{e.event_id}".encode()).hexdigest()
            assert deliveries.remember(delivery, t, t + 72 * 3600)
    n = len(events)
    report("cost_mix_events", n, "events")
    report("cost_mix_customers", COST_CUSTOMERS, "customers")
    for phase in ("event", "sweep", "webhook"):
        report(f"ddb_wcu_per_event_{phase}", meter.wcu[phase] / n, "WCU")
    report("ddb_wcu_per_event_all_in", sum(meter.wcu.values()) / n, "WCU")
    report("ddb_requests_per_webhook", meter.requests["webhook"] / n, "requests")
    report("ddb_wcu_per_webhook_duplicate_answer", deliveries_meter.wcu["event"] / n, "WCU")
    report("ddb_requests_per_event_profile_path", meter.requests["event"] / n, "requests")
    report("sweep_evaluations_per_event", evaluations / n, "evaluations")
    report("sweep_wasted_evaluations_share", (wasted / evaluations) if evaluations else 0.0, "ratio")
    for (phase, table), wcu in sorted(meter.by_table.items()):
        short = table.rsplit("-", 1)[-1]
        report(f"ddb_wcu_per_event_{phase}_{short}", wcu / n, "WCU")
    report("ddb_wcu_per_event_index_entries", sum(meter.index_wcu.values()) / n, "WCU")
    report("ddb_rru_per_event_all_in", sum(meter.rru.values()) / n, "RRU")
    report("own_cpu_us_per_event_profile_path", own_cpu / n * 1e6, "us")
    report("metrics_events_per_event", Count.metric_events / n, "events")
    usd = cost_model(wcu=sum(meter.wcu.values()) / n, rru=sum(meter.rru.values()) / n,
                     changes=Count.changes / n, profile_cpu_s=own_cpu / n, metric_events=Count.metric_events / n)
    for part, value in usd.items():
        report(f"usd_per_million_events_{part}", value, "USD")
    report("usd_per_million_events", sum(usd.values()), "USD")


def local_load(clients: int = 32, webhooks: int = 320) -> None:
    """What the local runner sustains: ``clients`` concurrent clients post ``webhooks`` signed Shopify
    orders to `segctl local start-api`'s server (in this process, embedded moto); webhooks answered
    per second, and profile events applied per second (until the profile queue has drained)."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime, timedelta

    from segctl.demo import http
    from segctl.provision import dev_secret_values
    from segctl.runtime import LocalStack
    from segctl.server import LocalApi
    from segctl.signing import shopify_headers

    for name in ("AWS_ENDPOINT_URL", "DESTINATIONS_FILE"):
        os.environ.pop(name, None)
    template = Template(ROOT / "template.yaml")
    template.parameters["MetricsBatchingWindow"] = "0"  # the drain waits for every queue
    stack = LocalStack(template, log_level="ERROR").start()
    api = LocalApi(stack, port=0).start()
    stack.start_pollers()
    secret = dev_secret_values({})["shopify"]
    created = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def post(n: int) -> int:
        body = (f'{{"id":{90000 + n},"email":"load{n % 100}@example.com","created_at":"{created}",'
                f'"total_price":"10.00"}}').encode()
        headers = shopify_headers(secret, body, "orders/create", f"evt-bench-{n}", "load.myshopify.com")
        return http("POST", f"{api.url}/webhooks/shopify", body, headers)[0]

    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            statuses = list(pool.map(post, range(webhooks)))
        answered = time.perf_counter() - start
        drained = stack.drain(300)
        applied = time.perf_counter() - start
    finally:
        api.stop()
        stack.stop()
    assert drained and statuses.count(200) == webhooks, statuses
    report("local_webhooks_per_s", webhooks / answered, "webhooks/s")
    report("local_profile_events_per_s", webhooks / applied, "events/s")
    report("local_concurrent_clients", clients, "clients")


#: AWS list prices used by the cost model: us-east-1, on-demand, as published in November 2026
#: (DynamoDB after its November 2024 on-demand price cut). Per million unless said.
PRICES = {
    "dynamodb_write_unit": 0.625, "dynamodb_read_unit": 0.125,
    "lambda_request": 0.20, "lambda_arm_gb_second": 0.0000133334 * 1e6,
    "eventbridge_event": 1.00, "sqs_request": 0.40, "http_api_request": 1.00,
    "logs_gb": 0.50,  # per GB ingested
}


def cost_model(wcu: float, rru: float, changes: float, profile_cpu_s: float,
               metric_events: float = 0.0) -> dict[str, float]:
    """US dollars per million ingested events, by service. What each event costs besides DynamoDB
    (the bench's measured write and read units): one HTTP API request; a WebhookFunction invocation
    (512 MB, ~45 ms: verify, normalise, one PutEvents); one CustomerEvent on the bus and ``changes`` membership events;
    SQS: the bus's send, then receive and delete in batches of 10 (ProfileQueue) for the event and
    of ~100 for the changes (EspSyncQueue), and for the changes and ``metric_events`` again into
    MetricsQueue (batches of ~100, as MetricsFunction's invocations); a tenth of a ProfileFunction
    invocation per event (batches of 10) lasting its own CPU plus ~3 DynamoDB round trips of 8 ms;
    ~1.5 KB of logs. (MetricsFunction's DynamoDB writes are ``metrics_wcu_per_event``, apart.)"""
    gb = 512 / 1024
    webhook_s, profile_s = 0.045, profile_cpu_s + 3 * 0.008
    per_event = {
        "dynamodb": (wcu * PRICES["dynamodb_write_unit"] + rru * PRICES["dynamodb_read_unit"]),
        "lambda": (1 + 0.1 + changes / 100 + (changes + metric_events) / 100) * PRICES["lambda_request"]
                  + (webhook_s + profile_s) * gb * PRICES["lambda_arm_gb_second"],
        "eventbridge": (1 + changes + metric_events) * PRICES["eventbridge_event"],
        "sqs": (1 + 0.2 + changes * 1.02 + (changes + metric_events) * 1.02) * PRICES["sqs_request"],
        "http_api": PRICES["http_api_request"],
        "logs": 1.5 / (1024 * 1024) * 1e6 * PRICES["logs_gb"],
    }
    return {k: round(v, 4) for k, v in per_event.items()}


ESP_DESTINATIONS = """\
version: 1
destinations:
  - id: klaviyo-main
    type: klaviyo
    segments: {{recent-buyers: {{list: "{rb}"}}, at-risk: {{list: "{ar}"}}}}
    properties: {{PreferredCategory: preferred_category, OrderCount: order_count, Segments: segments}}
  - id: mailchimp-main
    type: mailchimp
    list: aud1
    segments: {{recent-buyers: {{tag: Recent Buyers}}, at-risk: {{tag: At-Risk}}}}
    merge_fields: {{PREFCAT: preferred_category, ORDERS: order_count}}
"""


def esp_calls() -> None:
    """Provider API calls per 1,000 membership changes, through the real clients against the fake
    Klaviyo (OpenAPI-checked) and Mailchimp; profiles and the sync's memory in memory.

    first_sight: 1,000 new addresses enter a synced segment (with their properties). steady: 1,000
    changes to addresses synced before: 400 enter a list, 300 leave one, 300 change a trait."""
    from fakes import InMemoryProfileStore, InMemorySyncStateStore
    from segctl.espfakes.klaviyo import FakeKlaviyo
    from segctl.espfakes.mailchimp import FakeMailchimp
    from segmentation.destinations.config import load_destinations
    from segmentation.domain.catalog import load_catalog
    from segmentation.domain.profile import Profile
    from segmentation.infra.esp.klaviyo import KlaviyoClient
    from segmentation.infra.esp.mailchimp import MailchimpClient
    from segmentation.service.esp_sync import EspSync, Notice

    catalog = load_catalog(None)
    with FakeKlaviyo() as klaviyo, FakeMailchimp(lists={"aud1": []}) as mailchimp:
        rb, ar = klaviyo.create_list("Recent buyers"), klaviyo.create_list("At risk")
        destinations = load_destinations(ESP_DESTINATIONS.format(rb=rb, ar=ar), catalog)
        store, states = InMemoryProfileStore(due_shards=4), InMemorySyncStateStore()
        clients = {"klaviyo-main": KlaviyoClient(klaviyo.api_key, base_url=klaviyo.base_url),
                   "mailchimp-main": MailchimpClient(mailchimp.api_key, "aud1", base_url=mailchimp.root_url)}
        sync = EspSync(destinations, store, states, lambda d: clients[d.id], catalog)
        at = int(time.time())

        def evaluate(i: int, segments: set[str], traits: dict) -> list[Notice]:
            pid = f"p{i:05d}"
            profile = store.get(pid) or Profile(profile_id=pid, email=f"bench{i}@example.com")
            new = [] if profile.version else [f"email#{profile.email}"]
            changes = profile.record_evaluation(segments, traits, None, at, "bench", watch=destinations.watched())
            store.save(profile, new, changes)
            return [Notice(message_id=f"m{pid}{c.version}{c.segment_id}", kind=c.change, profile_id=pid,
                           version=c.version, at=c.at, segment_id=c.segment_id or None, fields=c.fields)
                    for c in changes]

        def measure(notices: list[Notice]) -> tuple[int, int]:
            k, m = len(klaviyo.calls), len(mailchimp.calls)
            outcome = sync.sync(notices)
            assert not outcome.failed_messages
            return len(klaviyo.calls) - k, len(mailchimp.calls) - m

        first = [n for i in range(1000) for n in evaluate(i, {"at-risk"}, {"order_count": 1})]
        assert len([n for n in first if n.kind == "entered"]) == 1000
        k, m = measure(first)
        report("esp_api_calls_per_1000_changes_first_sight_klaviyo", k, "calls")
        report("esp_api_calls_per_1000_changes_first_sight_mailchimp", m, "calls")
        steady = []
        for i in range(400):
            steady += [n for n in evaluate(i, {"at-risk", "recent-buyers"}, {"order_count": 1}) if n.kind == "entered"]
        for i in range(400, 700):
            steady += evaluate(i, set(), {"order_count": 1})
        for i in range(700, 1000):
            steady += evaluate(i, {"at-risk"}, {"order_count": 2})
        assert len(steady) == 1000, len(steady)
        k, m = measure(steady)
        report("esp_api_calls_per_1000_changes_klaviyo", k, "calls")
        report("esp_api_calls_per_1000_changes_mailchimp", m, "calls")
        k, m = measure(steady)
        report("esp_api_calls_per_1000_changes_replayed", k + m, "calls")


def esp_lag() -> None:
    """Seconds from a membership change on the bus to the first request at the ESP, at low volume
    (one change), through the local runner: EventBridge rule -> EspSyncQueue -> EspSyncFunction with
    template.yaml's default batching window, against the fake Klaviyo."""
    import tempfile

    from segctl.espfakes.klaviyo import FakeKlaviyo
    from segctl.runtime import LocalStack
    from segmentation import bootstrap
    from segmentation.domain.profile import Profile

    _moto_profiles_env()
    with FakeKlaviyo() as klaviyo, tempfile.TemporaryDirectory() as tmp:
        rb = klaviyo.create_list("Recent buyers")
        path = Path(tmp) / "destinations.yaml"
        path.write_text("version: 1\ndestinations:\n  - id: k\n    type: klaviyo\n"
                        f"    segments: {{recent-buyers: {{list: \"{rb}\"}}}}\n")
        os.environ.update({"DESTINATIONS_FILE": str(path), "KLAVIYO_API_URL": klaviyo.base_url,
                           "KLAVIYO_API_KEY": klaviyo.api_key})
        template = Template(ROOT / "template.yaml")
        stack = LocalStack(template, log_level="ERROR").start()
        try:
            bootstrap.reset()
            stack.start_pollers()
            store = bootstrap.repository()
            profile = Profile(profile_id="lag", email="lag@example.com")
            changes = profile.record_evaluation({"recent-buyers"}, {}, None, int(time.time()), "bench")
            store.save(profile, ["email#lag@example.com"], changes)
            before = len(klaviyo.calls)
            start = time.time()
            bootstrap.publisher().publish_changes(changes)
            while len(klaviyo.calls) == before and time.time() - start < 120:
                time.sleep(0.05)
            lag = time.time() - start
        finally:
            stack.stop()
            for k in ("DESTINATIONS_FILE", "KLAVIYO_API_URL", "KLAVIYO_API_KEY"):
                os.environ.pop(k, None)
            bootstrap.reset()
    assert klaviyo.members(rb) == {"lag@example.com"} or lag > 0
    report("esp_sync_batching_window_s", float(template.parameters["EspSyncBatchingWindow"]), "s")
    report("esp_sync_lag_s", lag, "s")


def metrics_cost() -> None:
    """What the segment figures add per event (issue 15): the cost mix through the profile path (in
    memory), its SegmentMetrics and membership changes gathered as MetricsQueue gathers them (the
    template's MetricsBatchingWindow), each batch written by the real DynamoDBMetricsStore on moto with
    template.yaml's MetricsTable and billed by DynamoDB's rules (bench/cost.py): one conditional update
    per segment and day a batch touches. At the mix's own rate (40 customers over 30 days: about one
    event an hour, so most batches hold one event), and with the same events arriving at 1 and at 10
    per second (a busy shop)."""
    import math
    from datetime import UTC, datetime

    import boto3
    from cost import WriteMeter
    from fakes import InMemoryProfileStore
    from moto import mock_aws
    from segctl.provision import create_tables
    from segmentation.domain.evaluation import default_evaluator
    from segmentation.infra.metrics_store import DynamoDBMetricsStore
    from segmentation.service.profiles import ProfileService
    from segmentation.service.segment_metrics import summed

    events = _cost_events()
    published: list[tuple[int, str, dict]] = []
    clock = {"now": 0}

    class Capture:
        def publish_changes(self, changes):
            published.extend((clock["now"], c.detail_type, c.detail()) for c in changes if c.segment_id)

        def publish_metrics(self, profile_id, cause, facts):
            published.append((clock["now"], "SegmentMetrics", {"facts": [f.detail() for f in facts]}))

    service = ProfileService(InMemoryProfileStore(due_shards=4), default_evaluator(), Capture(),
                             clock=lambda: clock["now"])
    for e in events:
        clock["now"] = int(e.occurred_at.timestamp()) + 2
        service.apply(e)
    window = float(TEMPLATE.ref("MetricsBatchingWindow"))

    def wcu(arrivals: list[tuple[float, str, dict]]) -> float:
        """Write units per event of the figures' batches, gathered for ``window`` seconds."""
        with mock_aws():
            client, raw = boto3.client("dynamodb"), boto3.client("dynamodb")
            create_tables(TEMPLATE, raw)
            meter = WriteMeter(client, raw)
            store = DynamoDBMetricsStore(client, TEMPLATE.physical_name("MetricsTable"))
            batch: list = []
            start = 0.0
            for n, (at, kind, detail) in enumerate([*arrivals, (math.inf, "", {})]):
                if batch and (at - start >= window or at == math.inf):
                    store.add(summed((k, d) for _, k, d in batch), f"batch-{n}")
                    batch = []
                if at != math.inf:
                    start = at if not batch else start
                    batch.append((at, kind, detail))
            return sum(meter.wcu.values()) / len(events)

    report("metrics_batching_window_s", window, "s")
    report("metrics_events_per_event", sum(1 for _, k, _ in published if k == "SegmentMetrics") / len(events), "events")
    report("metrics_wcu_per_event", wcu(published), "WCU")
    first = published[0][0] if published else 0
    span = events[-1].occurred_at.timestamp() - events[0].occurred_at.timestamp()
    def moved(detail: dict, at: float) -> dict:
        """The detail with its times at ``at``: the days a batch touches are those of its arrival."""
        iso = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if "facts" in detail:
            return {**detail, "facts": [{**f, "at": iso} for f in detail["facts"]]}
        return {**detail, "at": iso}

    for rate in (1, 10):
        squeeze = span / (len(events) / rate)
        busy = []
        for at, k, d in published:
            new_at = first + (at - first) / squeeze
            busy.append((new_at, k, moved(d, new_at)))
        report(f"metrics_wcu_per_event_at_{rate}_events_per_s", wcu(busy), "WCU")


IMPORT_CUSTOMERS = int(os.environ.get("BENCH_IMPORT_CUSTOMERS", "400"))


def history_import() -> None:
    """Importing a shop's history (issue 14): a generated orders CSV and customers CSV (IMPORT_CUSTOMERS
    customers; orders per customer skewed as in shops: most buy once or twice, a few up to 40 times,
    over two years; one customer in ten unsubscribed) through `segctl import csv`'s code path, on moto
    with template.yaml's tables, billed by bench/cost.py. Profiles per second is this machine running
    moto in-process (not DynamoDB's latency)."""
    import io
    import random
    from datetime import UTC, datetime, timedelta

    import boto3
    from cost import WriteMeter
    from moto import mock_aws
    from segctl.provision import create_tables
    from segmentation.domain.evaluation import default_evaluator
    from segmentation.history.csv_files import read_customers, read_orders
    from segmentation.infra.profile_store import DynamoDBProfileStore
    from segmentation.service.history_import import HistoryImport
    from segmentation.service.profiles import ProfileService

    rnd = random.Random(14)
    now = datetime.now(UTC).replace(microsecond=0)
    orders = ["order_id,email,created_at,total,status,categories"]
    customers = ["email,first_name,email_consent,created_at"]
    n_orders = 0
    for c in range(IMPORT_CUSTOMERS):
        count = min(40, max(1, int(rnd.paretovariate(1.3))))
        first = now - timedelta(days=rnd.randint(1, 730))
        customers.append(f"c{c}@example.com,C{c},{'unsubscribed' if c % 10 == 0 else 'subscribed'},{first.isoformat()}")
        for _ in range(count):
            at = first + timedelta(seconds=rnd.randint(0, int((now - first).total_seconds())))
            status = "cancelled" if rnd.random() < 0.05 else "placed"
            orders.append(f"{n_orders},c{c}@example.com,{at.isoformat()},{rnd.randint(10, 300)}.00,{status},"
                          f"{rnd.choice(['shoes', 'bags', 'shirts'])}")
            n_orders += 1

    class Quiet:
        def publish_changes(self, changes):
            pass

    _moto_profiles_env()

    def run(metered: bool):
        with mock_aws():
            client, raw = boto3.client("dynamodb"), boto3.client("dynamodb")
            create_tables(TEMPLATE, raw)
            meter = WriteMeter(client, raw) if metered else None
            store = DynamoDBProfileStore(client, TEMPLATE.physical_name("ProfilesTable"),
                                         TEMPLATE.physical_name("AliasesTable"),
                                         TEMPLATE.physical_name("MembershipsTable"),
                                         due_shards=4, history_table=TEMPLATE.physical_name("HistoryTable"))
            service = ProfileService(store, default_evaluator(), Quiet(), clock=lambda: int(now.timestamp()))
            job = HistoryImport(service, store, checkpoint_every=100)
            records = [*read_customers(io.StringIO("\n".join(customers))),
                       *read_orders(io.StringIO("\n".join(orders)), now=now)]
            started = time.perf_counter()
            outcome = job.run(records, "import#bench", quiet=True)
            took = time.perf_counter() - started
        assert outcome.written == IMPORT_CUSTOMERS and outcome.rejected == 0, outcome
        return meter, took

    meter, _ = run(metered=True)  # the bill (the meter reads every item it bills: not timed)
    _, took = run(metered=False)
    profile_writes = sum(n for (_, table), n in meter.write_requests.items() if table.endswith("ProfilesTable"))
    report("import_customers", IMPORT_CUSTOMERS, "customers")
    report("import_orders", n_orders, "orders")
    report("import_profiles_per_s", IMPORT_CUSTOMERS / took, "profiles/s")
    report("import_ddb_writes_per_profile", profile_writes / IMPORT_CUSTOMERS, "writes")
    report("import_ddb_requests_per_profile", meter.requests["event"] / IMPORT_CUSTOMERS, "requests")
    report("import_ddb_wcu_per_order", sum(meter.wcu.values()) / n_orders, "WCU")


if __name__ == "__main__":
    report("machine_cpus", os.cpu_count() or 0, "cpus")  # timings and rates are this machine's
    segment_eval()
    preview_throughput()
    profile_size()
    oracle_ratio()
    sweep_reads()
    transition_lag()
    requests_per_event()
    ddb_cost()
    metrics_cost()
    history_import()
    esp_calls()
    esp_lag()
    local_load()
    cold_imports()
