"""Segment health (issue 15, docs/measure.md): the warnings a marketer should see next to the
segments. The guide's advice is a handful of segments that matter, not many near-duplicates:

* ``too_many_synced``: more than MAX_SYNCED segments sent to the ESPs (the destinations file);
* ``overlap``: two segments whose members are nearly the same (Jaccard index above MAX_JACCARD);
* ``too_small``: a segment below the minimum size (its rates are noise, its campaigns not worth it);
* ``high_unsubscribe``: a segment whose unsubscribe rate is above the account's, beyond doubt (the
  low end of its 95% interval is above the account's rate).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from .segment_metrics import ACCOUNT, MetricsStore, report, wilson

MAX_SYNCED = 10
MAX_JACCARD = 0.8


def warnings(segments: list[dict], synced: set[str], pairs: list[dict] | None, store: MetricsStore | None,
             start: date, end: date, min_size: int, related: set[frozenset[str]] = frozenset()) -> list[dict[str, Any]]:
    """``segments`` as GET /segments lists them (id, size, family); ``synced``: the segments of the
    destinations file; ``pairs``: the overlap computation's pairs (None: not computed); ``store``:
    the daily figures, read over ``start``..``end`` for the unsubscribe rates; ``related``: pairs
    that overlap by construction (an experiment's union and its arms), not worth a warning."""
    out: list[dict[str, Any]] = []
    if len(synced) > MAX_SYNCED:
        out.append({"kind": "too_many_synced", "segments": sorted(synced),
                    "message": f"{len(synced)} segments are synced to the ESPs; more than {MAX_SYNCED} is hard to "
                               "act on: merge or drop the ones that overlap or stay small"})
    for p in pairs or []:
        if p["jaccard"] > MAX_JACCARD and frozenset((p["a"], p["b"])) not in related:
            out.append({"kind": "overlap", "segments": [p["a"], p["b"]],
                        "message": f"{p['a']} and {p['b']} share {p['jaccard']:.0%} of their members "
                                   f"(Jaccard index): one of them is probably enough"})
    bases = [s for s in segments if not s.get("family")]
    for s in bases:
        if s["size"] < min_size:
            out.append({"kind": "too_small", "segments": [s["id"]],
                        "message": f"{s['id']} has {s['size']} members, under the minimum of {min_size}: its "
                                   "rates are noise and campaigns to it reach few people"})
    if store is not None:
        account = report(store, ACCOUNT, start, end)["totals"]
        if account["delivered"]:
            base_rate = account["unsubscribed"] / account["delivered"]
            for s in bases:
                totals = report(store, s["id"], start, end)["totals"]
                interval = wilson(min(totals["unsubscribed"], totals["delivered"]), totals["delivered"])
                if interval and interval[0] > base_rate:
                    rate = totals["unsubscribed"] / totals["delivered"]
                    out.append({"kind": "high_unsubscribe", "segments": [s["id"]],
                                "message": f"{s['id']} unsubscribes {rate:.2%} of deliveries against the account's "
                                           f"{base_rate:.2%} ({start} to {end}): send it less, or something else"})
    return out
