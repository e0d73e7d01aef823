"""`segctl import woocommerce`: import a WooCommerce store's orders and customers (docs/import.md).

From the store's REST API v3 (``--site https://shop.example.com --key ck_… --secret cs_…``, a key
with Read permission), page by page with progress; or from files of REST objects (JSON arrays as
the API returns its pages, or JSON Lines), whose kind (orders or customers) is read from the
objects themselves. The events are the ones the store's webhooks make (same ids), scoped to the
site's host as the webhooks are, so a store whose webhooks already run imports without counting
anything twice. Resumable and idempotent, as `segctl import csv`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .imports import import_with_progress
from .progress import Progress
from .template import Template

KINDS = ("customers", "orders")  # customers first: their names and ids, then what they bought


def on_local_stack(template: Template, run: Callable[[], int]) -> int:
    """Run an import against the endpoint `segctl local start-api` prints (``AWS_ENDPOINT_URL``), as
    `segctl import csv` does; Ctrl-C says how to resume."""
    if not os.environ.get("AWS_ENDPOINT_URL"):
        raise SystemExit("segctl: set AWS_ENDPOINT_URL to the endpoint `segctl local start-api` prints "
                         "(its data lives there); an embedded endpoint would be empty")
    from .runtime import LocalStack

    stack = LocalStack(template, log_level="WARNING").start()
    try:
        return run()
    except KeyboardInterrupt:
        print("\nsegctl: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        stack.stop()


def import_woocommerce(template: Template, site: str, key: str | None, secret: str | None, files: list[str],
                       quiet: bool) -> int:
    """`segctl import woocommerce` on the local stack."""
    return on_local_stack(template, lambda: run_woocommerce_import(site, key, secret, [Path(f) for f in files], quiet))


def _page_progress(progress: Progress):
    def show(resource: str, page: int, pages: int | None, read: int) -> None:
        of = f"/{pages:,}" if pages is not None else ""
        progress.show(f"  {resource}: page {page:,}{of}, {read:,} records")

    return show


def run_woocommerce_import(site: str, key: str | None, secret: str | None, files: list[Path], quiet: bool,
                           base_url: str | None = None, *, per_page: int | None = None) -> int:
    """The import itself, on the components bootstrap builds (the local stack's, or any). ``files``
    given: read them; else page through the REST API (``base_url`` replaces the site's address for
    the requests: a local fake; ``per_page``: the page size, 100 unless given)."""
    from segmentation.history.woocommerce import file_kind, read_file, read_objects
    from segmentation.infra.woocommerce_rest import PER_PAGE, WooCommerceRest, WooCommerceRestError
    from segmentation.service.history_import import job_id
    from segmentation.sources.woocommerce import site_host

    shop = site_host(site)
    if shop is None:
        raise SystemExit(f"segctl: --site must be the store's address, e.g. https://shop.example.com (not {site[:80]!r})")
    now = datetime.now(UTC)
    started = time.monotonic()
    if files:
        for path in files:
            if not path.is_file():
                raise SystemExit(f"segctl: {path}: no such file")
        inputs: list[tuple[str, str, str]] = []  # (kind, name, text)
        for path in files:
            text = path.read_text(encoding="utf-8-sig", errors="replace")
            kind = file_kind(text)
            if kind is None:
                raise SystemExit(f"segctl: {path}: not a file of WooCommerce REST orders or customers (JSON arrays "
                                 "as the REST API returns them, or one object a line)")
            inputs.append((kind, path.name, text))
        inputs.sort(key=lambda i: KINDS.index(i[0]))
        job = job_id(["woocommerce", shop, str(quiet),
                      *(f"{k}:{hashlib.sha256(t.encode()).hexdigest()}" for k, _, t in inputs)])
        what = f"{', '.join(f'{n} ({k})' for k, n, _ in inputs)} as WooCommerce ({shop})"

        def records():
            for kind, name, text in inputs:
                yield from read_file(io.StringIO(text), shop, now, kind, name)  # lines end at "\n" only
    else:
        if not key or not secret:
            raise SystemExit("segctl: give --key and --secret (a REST API key with Read permission: WooCommerce > "
                             "Settings > Advanced > REST API > Add key), or files of REST objects")
        pages = Progress("pages")
        try:
            client = WooCommerceRest(site, key, secret, base_url=base_url, per_page=per_page or PER_PAGE)
            print(f"reading {site} through the WooCommerce REST API")
            fetched: dict[str, list[tuple[int, Any]]] = {}
            for resource in KINDS:
                pages = Progress("pages")
                fetched[resource] = list(client.records(resource, _page_progress(pages)))
                pages.finish()
        except WooCommerceRestError as exc:
            pages.finish()
            raise SystemExit(f"segctl: {exc}") from None
        digest = hashlib.sha256()
        for resource in KINDS:
            for _, record in fetched[resource]:
                digest.update(json.dumps(record, sort_keys=True, separators=(",", ":")).encode())
        job = job_id(["woocommerce", shop, str(quiet), digest.hexdigest()])
        what = f"{len(fetched['customers']):,} customers and {len(fetched['orders']):,} orders as WooCommerce ({shop})"

        def records():
            for resource in KINDS:
                yield from read_objects(fetched[resource], shop, now, resource, f"REST API {resource}")

    return import_with_progress(what, records(), job, quiet, started)
