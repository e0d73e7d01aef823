"""`segctl demo`: start the embedded stack, replay signed Shopify webhooks over HTTP, print a segment report."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from .progress import Progress
from .provision import dev_secret_values
from .runtime import LocalStack
from .server import LocalApi
from .signing import (
    adobe_headers,
    demo_keys,
    klaviyo_headers,
    mailchimp_delivery,
    mandrill_delivery,
    segment_headers,
    sendgrid_headers,
    shopify_headers,
    woocommerce_headers,
)
from .template import Template


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def materialise(delivery: dict, now: datetime) -> bytes:
    """The delivery's payload with its times set relative to ``now``, as exact body bytes."""
    payload = dict(delivery["payload"])
    created = now - timedelta(hours=delivery["ago_hours"])
    updated = now - timedelta(hours=delivery.get("updated_ago_hours", delivery["ago_hours"]))
    payload["created_at"] = _iso(created)
    payload["updated_at"] = _iso(updated)
    if delivery.get("cancel"):
        payload["cancelled_at"] = _iso(updated)
    if "completed_ago_hours" in delivery:
        payload["completed_at"] = _iso(now - timedelta(hours=delivery["completed_ago_hours"]))
    consent = payload.get("email_marketing_consent")
    if isinstance(consent, dict):
        payload["email_marketing_consent"] = {**consent, "consent_updated_at": _iso(created)}
    return json.dumps(payload, separators=(",", ":")).encode()


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            data = resp.read()
            return resp.status, json.loads(data) if data else {}
    except urllib.error.HTTPError as exc:
        data = exc.read()
        return exc.code, json.loads(data) if data else {}


def signed_request(d: dict, doc: dict, secrets: dict[str, str], now: datetime) -> tuple[str, bytes, dict]:
    """(path, body, headers) of one delivery of a demo stream, signed the way its source signs."""
    source = d.get("source", "shopify")
    at = now - timedelta(hours=d["ago_hours"])
    if source == "shopify":
        body = materialise(d, now)
        return "/webhooks/shopify", body, shopify_headers(
            secrets["shopify"], body, d["topic"], d["event_id"], doc.get("shop", "demo-shop.myshopify.com"))
    if source == "segment":
        message = {**d["message"], "timestamp": _iso(at),
                   "messageId": f"demo-{d['message'].get('anonymousId') or d['message'].get('userId')}-{d['ago_hours']}"}
        body = json.dumps(message, separators=(",", ":")).encode()
        return "/webhooks/segment", body, segment_headers(secrets["segment"], body)
    if source == "mandrill":
        events = [{**e, "ts": int(at.timestamp())} for e in d["events"]]
        body, headers = mandrill_delivery(secrets["mandrill"], secrets["mandrill_url"], json.dumps(events, separators=(",", ":")))
        return "/webhooks/mandrill", body, headers
    if source == "mailchimp":
        body, headers = mailchimp_delivery({**d["form"], "fired_at": at.strftime("%Y-%m-%d %H:%M:%S")})
        return f"/webhooks/mailchimp?token={quote(secrets['mailchimp'])}", body, headers
    if source in SAMPLES:
        return from_sample(d, secrets, at, now)
    raise ValueError(f"the demo cannot sign {source} deliveries")


#: sample payload files whose fixed times and email the demo replaces: (marker -> new value)
SAMPLES = {"woocommerce", "klaviyo", "sendgrid", "magento"}


def from_sample(d: dict, secrets: dict, at: datetime, now: datetime) -> tuple[str, bytes, dict]:
    """A provider's sample payload from events/, re-timed and re-addressed, signed as that provider."""
    source = d["source"]
    # The samples are all Ana's: give each demo customer their own email and no shared phone.
    text = Path(d["sample"]).read_text().replace("ana.lopez@example.com", d["email"]).replace("+34600111222", "")
    epoch = str(int(at.timestamp()))
    if source == "woocommerce":
        stamp = at.strftime("%Y-%m-%dT%H:%M:%S")
        text = text.replace("2024-05-14T14:22:31", stamp).replace("2024-05-14T14:22:35", stamp)
        text = text.replace('"id":4211', f'"id":{d["id"]}')
        body = text.encode()
        return "/webhooks/woocommerce", body, woocommerce_headers(secrets["woocommerce"], body, d["topic"])
    if source == "klaviyo":
        text = text.replace("2024-05-14T14:22:31+00:00", at.isoformat()).replace("1715696551", epoch)
        text = text.replace("01HXEV00000000000000000002", f"01HXEV{d['id']:0>20}"[:26])
        body = text.encode()
        webhook_id = json.loads(text)["meta"]["klaviyo_webhook_id"]
        return "/webhooks/klaviyo", body, klaviyo_headers(
            secrets["klaviyo"], body, now.strftime("%a, %d %b %Y %H:%M:%S GMT"), webhook_id)
    if source == "sendgrid":
        text = text.replace("1715696551", epoch).replace("b3Blbi0wLTEyMzQ1Njc4OTAtYWJj", f"demo-{d['id']}")
        text = text.replace("14c5d75ce93", f"demo{d['message']}")
        body = text.encode()
        return "/webhooks/sendgrid", body, sendgrid_headers(secrets["_sendgrid_private"], body, str(int(now.timestamp())))
    stamp = at.strftime("%Y-%m-%d %H:%M:%S")
    text = text.replace("2024-05-14T14:22:36.702Z", _iso(at)).replace("2024-05-14 14:22:31", stamp)
    text = text.replace("2024-05-14 14:22:35", stamp).replace("5c1e4c9d-7f2b-4a8e-9d31-2b6f0a7c8e14", f"demo-{d['id']}")
    text = text.replace('"000000031"', f'"{d["id"]}"')
    body = text.encode()
    return "/webhooks/magento", body, adobe_headers(secrets["_magento_private"], body)


#: the demo's live webhooks: a Shopify store, then several sources at once
DEMO_STREAMS = ["events/demo/shopify-stream.json", "events/demo/mixed-stream.json"]


def replay(api_url: str, stream_path: Path, secrets: dict[str, str], now: datetime | None = None) -> dict[int, int]:
    """POST every delivery of the stream, signed; return a count per status code."""
    now = now or datetime.now(UTC)
    doc = json.loads(stream_path.read_text())
    statuses: dict[int, int] = {}
    total = len(doc["deliveries"])
    progress = Progress(f"{stream_path.name} deliveries")  # a bar on a terminal, lines in a log
    for i, d in enumerate(doc["deliveries"], 1):
        path, body, headers = signed_request(d, doc, secrets, now)
        status, _ = http("POST", f"{api_url}{path}", body, headers)
        statuses[status] = statuses.get(status, 0) + 1
        progress.update(i, total)
    progress.finish()
    return statuses


def report(api_url: str, members_shown: int = 5) -> str:
    _, body = http("GET", f"{api_url}/segments")
    lines = [f"{'segment':<30} {'size':>4}  members"]
    for seg in body["segments"]:
        _, page = http("GET", f"{api_url}/segments/{seg['id']}/members?limit={members_shown}")
        emails = []
        for pid in page.get("profile_ids", []):
            _, prof = http("GET", f"{api_url}/profiles/{pid}")
            emails.append(prof.get("email") or pid)
        more = "" if seg["size"] <= len(emails) else f" (+{seg['size'] - len(emails)} more)"
        lines.append(f"{seg['id']:<30} {seg['size']:>4}  {', '.join(sorted(emails)) or '-'}{more}")
    return "\n".join(lines)


#: where the demo's segments go (built-in fake ESPs unless KLAVIYO_API_URL / MAILCHIMP_API_URL are set)
DEMO_DESTINATIONS = "events/demo/destinations.yaml"
#: the shop's history the demo imports first (docs/import.md); its dates are as of HISTORY_AS_OF and
#: are moved forward to today, so the same customers are recent, lapsed or repeat buyers any day
DEMO_HISTORY = Path("events/demo/history")
HISTORY_AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
HISTORY_TIMES = ("created_at", "updated_at", "consent_updated_at")


def import_history(directory: Path, now: datetime, workdir: Path) -> int:
    """`segctl import csv` of the demo shop's history, its dates moved to ``now``."""
    import csv

    from .imports import run_import

    shift = timedelta(days=(now - HISTORY_AS_OF).days)
    files = []
    for kind in ("customers", "orders"):
        rows = list(csv.DictReader((directory / f"{kind}.csv").open(newline="")))
        for row in rows:
            for column in HISTORY_TIMES:
                if row.get(column):
                    moved = datetime.fromisoformat(row[column].replace("Z", "+00:00")) + shift
                    row[column] = moved.strftime("%Y-%m-%dT%H:%M:%SZ")
        path = workdir / f"{kind}.csv"
        with path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        files.append((path, kind))
    return run_import(files, "shopify", "demo-shop.myshopify.com", quiet=False)


def destinations_report(stack: LocalStack, path: str) -> str:
    """What each built-in fake ESP received: per list/tag, addresses added and removed, members now;
    the properties or merge fields set."""
    from segmentation.destinations.config import load_destinations
    from segmentation.domain.catalog import load_catalog

    destinations = load_destinations(Path(path).read_text(encoding="utf-8"), load_catalog(None), path)
    lines = [f"What each destination received ({path}):"]
    for d in destinations.destinations:
        fake = stack.esp_fakes.get(d.type)
        if fake is None:
            lines.append(f"  {d.id}: {d.type}, sent to {d.url if d.type == 'webhook' else 'its API URL'}")
            continue
        lines.append(f"  {d.id} (built-in fake {d.type.capitalize()}"
                     + (f", audience {d.list_id})" if d.type == "mailchimp" else ")"))
        for segment_id, target in d.segments.items():
            name = target.list_id if d.type == "klaviyo" else target.tag
            log = [(e, what) for t, e, what in fake.membership_log if t == name]
            now = sorted(fake.members(name) if d.type == "klaviyo" else fake.tag_members(d.list_id, name))
            label = f"list {name}" if d.type == "klaviyo" else f"tag {name!r}"
            lines.append(f"    {label} <- {segment_id}: +{sum(w == 'added' for _, w in log)} added, "
                         f"-{sum(w == 'removed' for _, w in log)} removed; now {len(now)}: {', '.join(now) or '-'}")
        if d.type == "klaviyo":
            written = {p["email"]: {k: v for k, v in p["properties"].items() if k in d.fields}
                       for p in fake.profiles.values() if p.get("email")}
        else:
            written = {e: {k: v for k, v in m["merge_fields"].items() if k in d.fields}
                       for e, m in fake.members(d.list_id).items()}
        written = {e: v for e, v in written.items() if v}
        what = "properties" if d.type == "klaviyo" else "merge fields"
        lines.append(f"    {what} {', '.join(d.fields)} set on {len(written)} profiles"
                     + (f"; e.g. {min(written)}: {json.dumps(written[min(written)], sort_keys=True)}" if written else ""))
    return "\n".join(lines)


def demo_secrets() -> tuple[dict[str, str], dict[str, str]]:
    """(the webhook secrets the stack checks with, the keys the demo signs with): the development
    secrets, with fresh SendGrid (ECDSA) and Adobe Commerce (RSA) key pairs whose private halves only
    the demo holds."""
    ec_key, ec_public, rsa_key, rsa_public = demo_keys()
    secrets = {**dev_secret_values(), "sendgrid": ec_public, "magento": rsa_public}
    return secrets, {**secrets, "_sendgrid_private": ec_key, "_magento_private": rsa_key}


def seed(stack: LocalStack, api_url: str, signing: dict[str, str], streams: list[str] = DEMO_STREAMS,
         now: datetime | None = None) -> int:
    """The demo's data: the shop's history imported, then every delivery of ``streams`` sent signed to
    the API at ``api_url``, and the profile and ESP sync queues drained. 0 when all of it went through."""
    now = now or datetime.now(UTC)
    print(f"  the shop's history first ({DEMO_HISTORY}/), as `segctl import csv` imports it:")
    with tempfile.TemporaryDirectory() as workdir:
        if import_history(DEMO_HISTORY, now, Path(workdir)) != 0:
            return 1
    print("  then the live webhooks:")
    statuses: dict[int, int] = {}
    for stream in streams:
        for status, n in replay(api_url, Path(stream), signing, now).items():
            statuses[status] = statuses.get(status, 0) + n
    print("  responses: " + ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items())))
    print("  waiting for the profile and ESP sync queues to drain ...", flush=True)
    if not stack.drain(90):
        print("segctl demo: the queues did not drain within 90 s", file=sys.stderr)
        return 1
    errors = [e for p in stack.pollers for e in p.errors]
    if errors:
        print(f"segctl demo: {len(errors)} processing error(s): {errors[:3]}", file=sys.stderr)
        return 1
    if set(statuses) != {200}:
        print("segctl demo: some deliveries were not accepted (see the responses above)", file=sys.stderr)
        return 1
    return 0


class BusTap:
    """What any consumer of the template's bus sees: every ``SegmentEntered`` / ``SegmentExited``,
    through a rule of the demo's own (not in template.yaml) into a queue of its own."""

    NAME = "segctl-demo-membership-tap"

    def __init__(self, stack: LocalStack) -> None:
        self.sqs = stack.client("sqs")
        events = stack.client("events")
        bus = stack.template.physical_name("EventBus")
        self.url = self.sqs.create_queue(QueueName=self.NAME)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name=self.NAME, EventBusName=bus, EventPattern=json.dumps(
            {"source": ["segmentation.profiles"], "detail-type": ["SegmentEntered", "SegmentExited"]}))
        events.put_targets(Rule=self.NAME, EventBusName=bus, Targets=[{"Id": "tap", "Arn": arn}])

    def drain(self) -> list[dict]:
        """The events that arrived since the last drain, as the bus delivered them (envelopes)."""
        out = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return out
            for m in messages:
                out.append(json.loads(m["Body"]))
            self.sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])


#: the time-based segments the demo follows as time moves on
TIME_SEGMENTS = ("at-risk", "inactive")


def time_jumps(catalog) -> list[int]:
    """Days from now at which the sweep runs: one day past each time segment's ``last: more_than``
    (31 and 61 with the default catalog), so that even a customer active a moment ago has crossed it."""
    days = []
    for segment_id in TIME_SEGMENTS:
        spec = catalog.segments.get(segment_id)
        last = spec.when.last if spec is not None else None
        if last is not None and last.more_than:
            days.append(last.more_than // 86400 + 1)
    return sorted(set(days))


def move_time(stack: LocalStack, api_url: str, catalog, now: datetime | None = None) -> tuple[int, list[dict]]:
    """Run the template's scheduled sweep (InactivitySweepFunction) at later times, as its schedule
    would run it then, and print what it put on the bus. Returns (exit code, the jumps: days, at,
    the sweep's totals, and the ``SegmentEntered`` / ``SegmentExited`` envelopes it published)."""
    from .timecmds import SWEEP_FUNCTION, run_sweep

    now = (now or datetime.now(UTC)).replace(microsecond=0)
    days = time_jumps(catalog)
    if not days:
        print(f"\nThe catalog has no {' / '.join(TIME_SEGMENTS)} segment with `last: more_than`: no time to move.")
        return 0, []
    tap = BusTap(stack)
    emails: dict[str, str] = {}

    def email(profile_id: str) -> str:
        if profile_id not in emails:
            _, profile = http("GET", f"{api_url}/profiles/{profile_id}")
            emails[profile_id] = profile.get("email") or profile_id
        return emails[profile_id]

    print(f"\nMoving time forward: {SWEEP_FUNCTION}, the sweep template.yaml schedules, run as its schedule would run "
          f"it {' and '.join(f'{d} days' for d in days)} from now")
    for segment_id in TIME_SEGMENTS:
        spec = catalog.segments.get(segment_id)
        if spec is not None:
            print(f"  {spec.name} ({segment_id}): {spec.description}")
    jumps = []
    for d in days:
        at = now + timedelta(days=d)
        totals = run_sweep(stack, at)
        events = tap.drain()
        jumps.append({"days": d, "at": at, "sweep": totals, "events": events})
        causes = sorted({e["detail"].get("cause") for e in events})
        print(f"  +{d} days ({_iso(at)}): {totals['evaluated']} due profiles evaluated, {len(events)} events on the bus, "
              f"cause {', '.join(causes) or '-'}")
        groups: dict[tuple[str, str], list[str]] = {}
        for e in events:
            groups.setdefault((e["detail-type"], e["detail"]["segment_id"]), []).append(email(e["detail"]["profile_id"]))
        for kind in ("SegmentExited", "SegmentEntered"):
            for segment_id in TIME_SEGMENTS:
                who = sorted(groups.pop((kind, segment_id), []))
                if who:
                    print(f"    {kind:<14} {segment_id:<9} {len(who):>3}  {', '.join(who)}")
        if groups:
            others = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0]))
            print("    other time-based changes: " + ", ".join(
                f"{kind.removeprefix('Segment').lower()} {segment_id} {len(who)}" for (kind, segment_id), who in others))
    sample = next((e for j in jumps[::-1] for e in j["events"]
                   if (e["detail-type"], e["detail"]["segment_id"]) == ("SegmentEntered", TIME_SEGMENTS[-1])), None)
    if sample is not None:
        print("  one of these events as a consumer of the bus receives it:")
        print("    " + json.dumps({k: sample[k] for k in ("source", "detail-type", "time", "detail")}))
    entered = {seg: any(e["detail-type"] == "SegmentEntered" and e["detail"]["segment_id"] == seg
                        for j in jumps for e in j["events"]) for seg in TIME_SEGMENTS if seg in catalog.segments}
    missing = [seg for seg, found in entered.items() if not found]
    if missing:
        print(f"segctl demo: moving time forward, nobody entered {', '.join(missing)}", file=sys.stderr)
        return 1, jumps
    return 0, jumps


def run(template_path: str, streams: list[str]) -> int:
    print("segctl demo: starting the embedded AWS (moto) and creating template.yaml's resources ...", flush=True)
    secrets, signing = demo_secrets()
    os.environ.setdefault("DESTINATIONS_FILE", DEMO_DESTINATIONS)
    template = Template(template_path)
    template.parameters["EspSyncBatchingWindow"] = "1"  # the demo waits for it; AWS gathers for 20 s
    template.parameters["MetricsBatchingWindow"] = "1"  # and 60 s for the segment figures
    stack = LocalStack(template, log_level="WARNING", secret_values=secrets, esp_fakes=True).start()
    api = LocalApi(stack, port=0).start()
    stack.start_pollers()
    try:
        from segmentation import bootstrap

        print(f"  local API on {api.url}; AWS endpoint {stack.endpoint}")
        now = datetime.now(UTC)
        if seed(stack, api.url, signing, streams, now) != 0:
            return 1
        print()
        print(report(api.url))
        _, maya = http("GET", f"{api.url}/profiles?email=maya.singh%40example.com")
        if maya.get("profile_id"):
            t = maya["traits"]
            print(f"\nOne customer, three sources (Segment browsing, Shopify order, Mandrill email): {maya['email']}\n"
                  f"  segments: {', '.join(maya['segments'])}\n"
                  f"  orders {t['order_count']}, open rate {t['email_open_rate_30d']}, preferred category "
                  f"{t['preferred_category']}, engagement {t['engagement_score']}")
        code, _ = move_time(stack, api.url, bootstrap.catalog(), now)
        if not stack.drain(90):
            print("segctl demo: the ESP sync queue did not drain within 90 s", file=sys.stderr)
            return 1
        errors = [e for p in stack.pollers for e in p.errors]
        if errors:
            print(f"segctl demo: {len(errors)} processing error(s) after the sweep: {errors[:3]}", file=sys.stderr)
            return 1
        print()
        print(destinations_report(stack, os.environ["DESTINATIONS_FILE"]))
        print("\nTo explore this data (as of now, before the time moved): segctl demo --serve, then open the "
              "dashboard at http://127.0.0.1:3000/dashboard (Swagger UI at /docs)")
        return code
    finally:
        api.stop()
        stack.stop()
