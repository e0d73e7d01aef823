"""The history import in AWS (docs/import.md, "In AWS"): a file put under ``imports/`` in the import
bucket is split into parts of whole people, the parts are imported in parallel by a Step Functions
Distributed Map, and a report is written next to the file.

Keys: ``imports/<file>`` (a CSV file, platform ``csv``) or ``imports/<platform>/<shop>/<file>``
(for an ESP, ``<shop>`` is the Klaviyo account or the Mailchimp audience id); the file's name says
what it holds (``orders*.csv``, ``customers*.csv``, a Shopify bulk export ``*.jsonl``, WooCommerce
``orders*.json``, a Klaviyo or Mailchimp export ``*.csv``: see :data:`READERS`).
Work goes under ``import-work/<job>/`` (the bucket expires it), the report is ``<key>.report.json``.

How the file is split: the split step reads the whole file once, groups its records per person
(records sharing an email, a platform customer id or an order, transitively) and writes each
person's events to exactly one part, ``PART_PEOPLE`` people per part. A person never spans two
parts, so each part's import writes each of its people once. The split is one Lambda invocation
(up to 15 minutes: a few million records); beyond that, put the history as several files (by month,
say). A person whose records are in two files is imported twice, by two parts; the live path's own
identity resolution and idempotent orders make the second import merge into the first safely (two
writes instead of one, nothing counted twice).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime

from ..domain.events import CustomerEvent
from ..history.records import Parsed, Rejected, group_customers
from .history_import import REASONS_KEPT, HistoryImport, ImportReport
from .ports import ObjectStore

__all__ = ["ImportJobs", "PART_PEOPLE", "READERS", "source_of"]
INPUT_PREFIX = "imports/"
WORK_PREFIX = "import-work/"
REPORT_SUFFIX = ".report.json"
#: people per part: a part's import is ~2 DynamoDB requests per person, well inside one invocation
PART_PEOPLE = 2000


def _csv_orders(lines: Iterable[str], platform: str, shop: str | None, now: datetime, name: str):
    from ..history.csv_files import read_orders

    return read_orders(lines, platform, shop, now=now, name=name)


def _csv_customers(lines: Iterable[str], platform: str, shop: str | None, now: datetime, name: str):
    from ..history.csv_files import read_customers

    return read_customers(lines, platform, shop, name=name)


def _shopify_bulk(lines: Iterable[str], platform: str, shop: str | None, now: datetime, name: str):
    from ..history.shopify_bulk import read_bulk

    return read_bulk(lines, shop or "", now, name)


def _woocommerce(kind: str):
    def read(lines: Iterable[str], platform: str, shop: str | None, now: datetime, name: str):
        from ..history.woocommerce import read_file

        return read_file(lines, shop or "", now, kind, name)
    return read


def _klaviyo(lines: Iterable[str], platform: str, shop: str | None, now: datetime, name: str):
    from ..history.esp_exports import read_klaviyo_profiles_csv

    return read_klaviyo_profiles_csv(lines, shop, now, name)


def _mailchimp(lines: Iterable[str], platform: str, shop: str | None, now: datetime, name: str):
    from ..history.esp_exports import read_mailchimp_audience_csv

    # Mailchimp's export names the subscribed file so; the other files' columns say their status
    status = "subscribed" if name.lower().startswith("subscribed") else None
    return read_mailchimp_audience_csv(lines, shop or "", status, now, name)


SHOPS = ("csv", "shopify", "woocommerce", "magento")
#: (platforms, file name prefix, suffix, reader(lines, platform, shop, now, name)), the first that fits
READERS: list[tuple[tuple[str, ...], str, str, Callable[..., Iterator[Parsed | Rejected]]]] = [
    (SHOPS, "orders", ".csv", _csv_orders),
    (SHOPS, "customers", ".csv", _csv_customers),
    (("shopify",), "", ".jsonl", _shopify_bulk),
    (("woocommerce",), "orders", ".json", _woocommerce("orders")),
    (("woocommerce",), "orders", ".jsonl", _woocommerce("orders")),
    (("woocommerce",), "customers", ".json", _woocommerce("customers")),
    (("woocommerce",), "customers", ".jsonl", _woocommerce("customers")),
    (("klaviyo",), "", ".csv", _klaviyo),
    (("mailchimp",), "", ".csv", _mailchimp),
]
PLATFORMS = (*SHOPS, "klaviyo", "mailchimp")


def source_of(key: str) -> tuple[str, str | None, Callable[..., Iterator[Parsed | Rejected]]]:
    """(platform, shop, reader) for an input key; ValueError saying how to name it otherwise."""
    parts = key[len(INPUT_PREFIX):].split("/")
    name = parts[-1].lower()
    if len(parts) == 1:
        platform, shop = "csv", None
    elif len(parts) == 3 and parts[0] in PLATFORMS and parts[1]:
        platform, shop = parts[0], parts[1]
    else:
        raise ValueError(f"put the file at imports/<file> or imports/<platform>/<shop or account>/<file> "
                         f"(platform: {', '.join(PLATFORMS)}), not {key}")
    for platforms, prefix, suffix, reader in READERS:
        if platform in platforms and name.startswith(prefix) and name.endswith(suffix):
            return platform, shop, reader
    known = ", ".join(f"{prefix}*{suffix}" for platforms, prefix, suffix, _ in READERS if platform in platforms)
    raise ValueError(f"the file name says what it holds: for {platform}, one of {known}; {parts[-1]} is none of them")


class ImportJobs:
    def __init__(self, objects: ObjectStore, history: Callable[[], HistoryImport],
                 clock: Callable[[], int]) -> None:
        self.objects = objects
        self.history = history
        self.clock = clock

    def split(self, key: str) -> dict:
        """Read the input, group it per person, write the parts; returns what the Map needs."""
        meta = self.objects.metadata(key)
        job = "j" + hashlib.sha256(f"{key}\0{meta.get('etag', '')}".encode()).hexdigest()[:20]
        quiet = meta.get("quiet", "").lower() in ("1", "true", "yes")
        work = f"{WORK_PREFIX}{job}/"
        counts = ImportReport()
        try:
            platform, shop, reader = source_of(key)
        except ValueError as exc:
            counts.reject(key, str(exc))
            self._put(f"{work}split.json", {"source": key, **counts.as_dict(), "error": str(exc)})
            return {"job": job, "source": key, "parts_prefix": f"{work}parts/", "parts": 0, "quiet": quiet}
        now = datetime.fromtimestamp(self.clock(), UTC)
        people = group_customers(counts.tally(reader(self.objects.lines(key), platform, shop, now,
                                                     key.rsplit("/", 1)[-1])))
        counts.customers = len(people)
        n = 0
        for n, start in enumerate(range(0, len(people), PART_PEOPLE), start=1):
            body = "".join(json.dumps({"events": [json.loads(e.model_dump_json()) for e in p.events]}) + "\n"
                           for p in people[start:start + PART_PEOPLE])
            self.objects.put(f"{work}parts/part-{n:05d}.jsonl", body.encode(), "application/x-ndjson")
        self._put(f"{work}split.json", {"source": key, **counts.as_dict()})
        return {"job": job, "source": key, "parts_prefix": f"{work}parts/", "parts": n, "quiet": quiet}

    def apply(self, job: str, part_key: str, quiet: bool, time_left: Callable[[], float] = lambda: float("inf")) -> dict:
        """Import one part (resumable: a retry continues after the people already written)."""
        part = part_key.rsplit("/", 1)[-1].removesuffix(".jsonl")

        def records() -> Iterator[Parsed | Rejected]:
            for n, line in enumerate(self.objects.lines(part_key), start=1):
                if line.strip():
                    yield Parsed(n, [CustomerEvent.model_validate(e) for e in json.loads(line)["events"]])

        report = self.history().run(records(), f"import#{job}#{part}", quiet=quiet, time_left=time_left)
        finished = report.resumed_from + report.written + report.failed + report.erased >= report.customers
        summary = {"part": part, "finished": finished, **report.as_dict()}
        self._put(f"{WORK_PREFIX}{job}/reports/{part}.json", summary)
        if not finished:
            raise TimeoutError(f"part {part} stopped for time after {report.written} people; it resumes when retried")
        return {"part": part, "written": report.written, "failed": report.failed}

    def report(self, job: str) -> dict:
        """Sum the split's counts and every part's report; write it next to the input file."""
        work = f"{WORK_PREFIX}{job}/"
        split = json.loads("".join(self.objects.lines(f"{work}split.json")))
        out = {"source": split["source"], "records": split["records"], "imported": split["imported"],
               "skipped": split["skipped"], "rejected": split["rejected"], "reasons": list(split["reasons"]),
               "customers": split["customers"], "written": 0, "failed": 0, "erased": 0, "changes": 0,
               "segments": {}, "parts": 0}
        if "error" in split:
            out["error"] = split["error"]
        for key in self.objects.keys(f"{work}reports/"):
            part = json.loads("".join(self.objects.lines(key)))
            out["parts"] += 1
            # a part retried after a timeout reports the people its earlier attempt did as resumed_from
            out["written"] += part["written"] + part["resumed_from"]
            for field in ("failed", "erased", "changes"):
                out[field] += part[field]
            for reason in part["reasons"]:
                if len(out["reasons"]) < REASONS_KEPT:
                    out["reasons"].append(reason)
            for segment, n in part["segments"].items():
                out["segments"][segment] = out["segments"].get(segment, 0) + n
        out["finished_at"] = datetime.fromtimestamp(self.clock(), UTC).isoformat().replace("+00:00", "Z")
        self._put(split["source"] + REPORT_SUFFIX, out)
        return out

    def _put(self, key: str, value: dict) -> None:
        self.objects.put(key, json.dumps(value, indent=1).encode())
