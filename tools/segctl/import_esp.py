"""`segctl import klaviyo|mailchimp`: import an ESP's member export (docs/import.md).

Klaviyo: a profiles CSV (a list or segment exported with its consent columns), ``--account`` the
Klaviyo account id. Mailchimp: the CSV files of an audience export (subscribed, unsubscribed,
cleaned), ``--account`` the audience id; each file's status is ``--status`` when given, else read
from its header (``UNSUB_TIME``, ``CLEAN_TIME``) or, for Mailchimp's own ``subscribed_…`` file, its
name. A file whose status cannot be told is refused: guessing could subscribe people who left.

Consent facts take effect by their own time (the latest wins), so an export older than what the live
webhooks delivered changes nothing, and nothing here ever makes a suppressed person subscribed
again. Resumable and idempotent, as `segctl import csv`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from .import_woocommerce import on_local_stack
from .imports import _digest, import_with_progress
from .template import Template

ESPS = ("klaviyo", "mailchimp")
WHERE_ACCOUNT = {
    "klaviyo": "the Klaviyo account id: the public API key / site ID under Settings > Account > API keys "
               "(the webhooks' meta.klaviyo_account_id)",
    "mailchimp": "the audience id: Audience > Settings > Audience name and defaults > Audience ID "
                 "(the webhooks' data[list_id])",
}


def import_esp(template: Template, kind: str, files: list[str], account: str | None, status: str | None,
               quiet: bool) -> int:
    """`segctl import klaviyo|mailchimp` on the local stack."""
    return on_local_stack(template, lambda: run_esp_import(kind, [Path(f) for f in files], account, status, quiet))


def _named_status(path: Path) -> str | None:
    """``subscribed`` for Mailchimp's ``subscribed_…`` export file (the header cannot tell it: only the
    unsubscribed and cleaned files have their own columns), else None."""
    return "subscribed" if path.name.lower().startswith("subscribed") else None


def run_esp_import(kind: str, files: list[Path], account: str | None, status: str | None, quiet: bool) -> int:
    """The import itself, on the components bootstrap builds (the local stack's, or any)."""
    from segmentation.history.esp_exports import (
        MAILCHIMP_STATUSES,
        read_klaviyo_profiles_csv,
        read_mailchimp_audience_csv,
    )
    from segmentation.service.history_import import job_id

    if kind not in ESPS:
        raise SystemExit(f"segctl: the ESP is one of {', '.join(ESPS)}")
    if not files:
        raise SystemExit(f"segctl: give the {kind} export file(s)")
    for path in files:
        if not path.is_file():
            raise SystemExit(f"segctl: {path}: no such file")
    account = (account or "").strip() or None
    if account is None:
        raise SystemExit(f"segctl: give --account, {WHERE_ACCOUNT[kind]}")
    if status is not None:
        if kind == "klaviyo":
            raise SystemExit("segctl: --status is for Mailchimp files; a Klaviyo export has a consent column")
        status = status.strip().lower()
        if status not in MAILCHIMP_STATUSES:
            raise SystemExit(f"segctl: --status is one of {', '.join(MAILCHIMP_STATUSES)}")
    now = datetime.now(UTC)
    statuses = {path: status or (_named_status(path) if kind == "mailchimp" else None) for path in files}
    job = job_id([kind, account, status or "", str(quiet), *(f"{statuses[p] or ''}:{_digest(p)}" for p in files)])

    def records():
        for path in files:
            with path.open(newline="", encoding="utf-8-sig", errors="replace") as f:
                if kind == "klaviyo":
                    yield from read_klaviyo_profiles_csv(f, account, now=now, name=path.name)
                else:
                    yield from read_mailchimp_audience_csv(f, account, statuses[path], now=now, name=path.name)

    return import_with_progress(f"{', '.join(str(p) for p in files)} as {kind} ({account})", records(), job, quiet)
