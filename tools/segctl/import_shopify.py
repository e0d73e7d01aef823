"""`segctl import shopify`: import a Shopify shop's customers and orders from its Admin API (docs/import.md).

Two bulk queries run at Shopify (customers, then orders with their line items), with their progress
printed while they run; their JSONL results are then read as they download and imported with a
progress bar, and the report of `segctl import csv` is printed. ``--file`` imports a JSONL export
saved before (the result of :data:`~segmentation.history.shopify_bulk.CUSTOMERS_QUERY` and/or
:data:`~segmentation.history.shopify_bulk.ORDERS_QUERY`, concatenated or not) instead.

The access token (``SHOPIFY_ACCESS_TOKEN``) needs the scopes read_customers and read_orders, and
read_all_orders for orders older than 60 days. Importing counts each order once however often it
runs, and whatever the webhooks delivered before or deliver after.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from .imports import _digest, import_with_progress
from .progress import Progress
from .template import Template


def shop_domain(shop: str) -> str:
    """``north-wind`` or ``https://north-wind.myshopify.com/`` -> ``north-wind.myshopify.com``."""
    from segmentation.sources.shopify import SHOP_DOMAIN

    domain = shop.strip().lower().removeprefix("https://").removeprefix("http://").strip("/")
    if "." not in domain:
        domain += ".myshopify.com"
    if not SHOP_DOMAIN.fullmatch(domain):
        raise SystemExit(f"segctl: --shop must be the shop's <name>.myshopify.com domain, not {shop!r}")
    return domain


def _progress(kind: str):
    progress = Progress("objects")

    def show(operation, seconds: float) -> None:
        progress.show(f"  {kind}: {operation.status.lower()}, {operation.object_count:,} objects, {seconds:,.0f} s",
                      final=operation.status in ("COMPLETED", "FAILED", "CANCELED", "EXPIRED"))

    return show


def import_shopify(template: Template, shop: str, file: str | None, quiet: bool) -> int:
    """The command on the local stack: as `segctl import csv` (``AWS_ENDPOINT_URL``), token from
    ``SHOPIFY_ACCESS_TOKEN``, and ``SHOPIFY_ADMIN_URL`` in place of ``https://<shop>`` (a fake)."""
    if not os.environ.get("AWS_ENDPOINT_URL"):
        raise SystemExit("segctl: set AWS_ENDPOINT_URL to the endpoint `segctl local start-api` prints "
                         "(its data lives there); an embedded endpoint would be empty")
    from .runtime import LocalStack

    stack = LocalStack(template, log_level="WARNING").start()
    try:
        return run_shopify_import(shop, os.environ.get("SHOPIFY_ACCESS_TOKEN"), Path(file) if file else None, quiet,
                                  os.environ.get("SHOPIFY_ADMIN_URL") or None)
    except KeyboardInterrupt:
        print("\nsegctl: interrupted; run the same command again (with --file, it resumes)", file=sys.stderr)
        return 130
    finally:
        stack.stop()


def _export(shop: str, token: str | None, base_url: str | None, save_dir: Path, now: datetime) -> Path:
    """Run the bulk queries and save their results in one file (customers, then orders): the import
    reads that file, so an interrupted import resumes with ``--file`` instead of exporting again."""
    from segmentation.history.shopify_bulk import CUSTOMERS_QUERY, ORDERS_QUERY
    from segmentation.infra.shopify_admin import SCOPES_HELP, ShopifyAdmin, ShopifyAdminError

    if not token:
        raise SystemExit(f"segctl: set SHOPIFY_ACCESS_TOKEN to an Admin API access token of {shop} "
                         f"(or give --file); {SCOPES_HELP}")
    client = ShopifyAdmin(shop, token, base_url=base_url)
    saved = save_dir / f"shopify-export-{shop}-{now.strftime('%Y%m%dT%H%M%SZ')}.jsonl"
    partial = saved.with_suffix(".part")
    try:
        granted = client.access_scopes()
        missing = [s for s in ("read_customers", "read_orders")
                   if s not in granted and s.replace("read_", "write_") not in granted]
        if missing:
            raise SystemExit(f"segctl: the token lacks {' and '.join(missing)}: {SCOPES_HELP}")
        if "read_all_orders" not in granted:
            print("note: the token lacks read_all_orders: Shopify exports only the orders of the last 60 days")
        print(f"exporting from {shop} (Shopify bulk queries; large shops take minutes)")
        operations = [client.export(query, _progress(kind))
                      for kind, query in (("customers", CUSTOMERS_QUERY), ("orders", ORDERS_QUERY))]
        with partial.open("w", encoding="utf-8") as out:
            for operation in operations:
                if operation.url:  # None: nothing to export
                    for line in client.lines(operation.url):
                        out.write(line if line.endswith("\n") else line + "\n")
    except ShopifyAdminError as exc:
        partial.unlink(missing_ok=True)
        raise SystemExit(f"segctl: {exc}; nothing was imported") from None
    partial.rename(saved)
    print(f"saved the export to {saved} ({saved.stat().st_size / 1e6:,.1f} MB); if the import is "
          f"interrupted, run the command again with --file {saved}: it resumes")
    return saved


def run_shopify_import(shop: str, token: str | None, file: Path | None, quiet: bool,
                       base_url: str | None = None, save_dir: Path | None = None) -> int:
    """The import itself, on the components bootstrap builds (the local stack's, or any): from
    ``file`` (a bulk query's JSONL) or, without one, from the shop's Admin API with ``token`` (the
    export is saved in ``save_dir``, the current directory by default, and imported from there)."""
    from segmentation.history.shopify_bulk import read_bulk
    from segmentation.service.history_import import job_id

    shop = shop_domain(shop)
    now = datetime.now(UTC)
    started = time.monotonic()
    if file is None:
        file = _export(shop, token, base_url, save_dir or Path.cwd(), now)
    elif not file.is_file():
        raise SystemExit(f"segctl: {file}: no such file")
    # the same file again resumes an interrupted run, or (once finished) changes nothing
    job = job_id(["shopify-bulk", shop, str(quiet), _digest(file)])

    def records():
        with file.open(encoding="utf-8-sig", errors="replace") as f:
            yield from read_bulk(f, shop, now, file.name)

    return import_with_progress(f"{file} from {shop}", records(), job, quiet, started)
