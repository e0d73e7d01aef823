"""`segctl segments validate [FILE]`, `segctl segments explain --email X` and `segctl segments preview FILE`."""

from __future__ import annotations

import json
import sys
import urllib.parse

from segmentation.domain.catalog import DEFAULT_CATALOG, CatalogError, load_catalog

from .demo import http


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "lifetime"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def validate(path: str | None) -> int:
    source = path or str(DEFAULT_CATALOG)
    try:
        catalog = load_catalog(path)
    except CatalogError as exc:
        print(f"segctl: the catalog is not valid:\n{exc}", file=sys.stderr)
        return 1
    families = [sid for sid, s in catalog.segments.items() if s.family]
    print(f"{source}: valid (version {catalog.version})")
    print(f"  {len(catalog.segments)} segments ({len(families)} famil{'y' if len(families) == 1 else 'ies'}: "
          f"{', '.join(families) or '-'}), {len(catalog.traits)} computed traits")
    r = catalog.retention
    kept = ", ".join(f"{s} {_duration(v)}" for s, v in sorted(r.browse.items()))
    print(f"  profiles keep: browsing ({kept or 'none'}), email {_duration(r.email or None)} (+60d for late opens), "
          f"checkouts {_duration(r.checkouts or None)}; orders and lifetime totals always")
    return 0


def _describe(cond: dict) -> str:
    kind = cond["kind"]
    mark = "yes" if cond["result"] else "no "
    if kind == "event":
        where = "".join(f" {k}={v}" for k, v in cond["where"].items())
        extra = (f", older than {_duration(cond['older_than_s'])}" if cond["older_than_s"] else "") + (
            f", none followed by {cond['not_followed_by']}" if cond["not_followed_by"] else "")
        return f"{mark} {'/'.join(cond['signal'])}{where} in {_duration(cond['within_s'])}{extra}: count {cond['count']} (wants {cond['compare']})"
    if kind in ("last", "first"):
        age = "never" if cond["age_s"] is None else f"{cond['age_s'] / 86400:.2f} days ago ({cond['at']})"
        bounds = " and ".join(x for x in (
            f"more than {_duration(cond['more_than_s'])}" if cond["more_than_s"] else "",
            f"at most {_duration(cond['at_most_s'])}" if cond["at_most_s"] else "") if x)
        return f"{mark} {kind} {'/'.join(cond['signal'])}: {age} (wants {bounds})"
    if kind == "ratio":
        ratio = "n/a" if cond["ratio"] is None else f"{cond['ratio']:.2f}"
        return f"{mark} ratio {cond['numerator']}/{cond['denominator']} = {ratio} (wants {cond['compare']}, at least {cond['min_denominator']})"
    if kind == "aggregate":
        return f"{mark} {cond['fn']} of {cond['signal']} in {_duration(cond['within_s'])} = {cond['amount']} (wants {cond['compare']})"
    if kind == "consent":
        return f"{mark} email consent {cond['state']} since {cond['since']} (wants {'/'.join(cond['wanted'])}" + (
            f" within {_duration(cond['changed_within_s'])})" if cond["changed_within_s"] else ")")
    if kind == "trait":
        return f"{mark} trait {cond['name']} = {cond['actual']!r}"
    if kind == "segment":
        return f"{mark} member of {cond['segment']}"
    return f"{mark} {kind}"


def _tree(cond: dict, depth: int, lines: list[str]) -> None:
    pad = "    " + "  " * depth
    if cond["kind"] in ("all", "any", "not"):
        lines.append(f"{pad}{'yes' if cond['result'] else 'no '} {cond['kind']} of:")
        for child in cond["conditions"]:
            _tree(child, depth + 1, lines)
    else:
        lines.append(pad + _describe(cond))


def explain(url: str, email: str) -> int:
    base = url.rstrip("/")
    try:
        status, profile = http("GET", f"{base}/profiles?email={urllib.parse.quote(email)}")
    except OSError as exc:
        print(f"segctl: cannot reach {base} ({exc}); start `segctl local start-api` or pass --url", file=sys.stderr)
        return 2
    if status == 404:
        print(f"segctl: no profile with email {email}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"segctl: {base} answered {status}: {profile}", file=sys.stderr)
        return 1
    _, body = http("GET", f"{base}/profiles/{profile['profile_id']}/explain")
    print(f"{email} (profile {profile['profile_id']}) at {body['at']}, catalog {body['catalog_version']}")
    lines: list[str] = []
    for sid, seg in body["segments"].items():
        suppressed = " (excluded: suppressed)" if seg.get("excluded_as_suppressed") else ""
        lines.append(f"  {'MEMBER    ' if seg['member'] else 'not member'}  {sid}{suppressed}")
        _tree(seg["condition"], 0, lines)
    print("\n".join(lines))
    return 0


def _post_json(url: str, payload: dict) -> tuple[int, dict]:
    return http("POST", url, json.dumps(payload).encode(), {"Content-Type": "application/json"})


def _changed_segments(base: str, catalog) -> list[str]:
    """Segments of ``catalog`` that the API does not have, or has with another definition."""
    changed = []
    for sid, spec in catalog.segments.items():
        status, body = http("GET", f"{base}/segments/{urllib.parse.quote(sid)}?limit=1")
        if status == 404 or body.get("definition") != spec.model_dump(mode="json", by_alias=True, exclude_none=True):
            changed.append(sid)
    return changed


def preview(url: str, path: str, segment_ids: list[str] | None, sample: int) -> int:
    """Dry-run segments of a catalog file against the stored profiles (POST /segments/preview):
    by default every segment the file adds or changes compared with the deployed catalog."""
    try:
        catalog = load_catalog(path)
    except CatalogError as exc:
        print(f"segctl: the catalog is not valid:\n{exc}", file=sys.stderr)
        return 1
    base = url.rstrip("/")
    unknown = [s for s in segment_ids or [] if s not in catalog.segments]
    if unknown:
        print(f"segctl: {path} has no segment {', '.join(unknown)}", file=sys.stderr)
        return 1
    try:
        ids = segment_ids or _changed_segments(base, catalog)
    except OSError as exc:
        print(f"segctl: cannot reach {base} ({exc}); start `segctl local start-api` or pass --url", file=sys.stderr)
        return 2
    if not ids:
        print(f"{path}: every segment is as deployed; nothing to preview (name one with --segment)")
        return 0
    for sid in ids:
        request = {"segment_id": sid, "sample": sample,
                   "definition": catalog.segments[sid].model_dump(mode="json", by_alias=True, exclude_none=True)}
        body: dict = {"cursor": None}
        while True:
            status, body = _post_json(f"{base}/segments/preview", {**request, "cursor": body.get("cursor")})
            if status != 200:
                print(f"segctl: {sid}: {base} answered {status}: {body.get('message', body)}", file=sys.stderr)
                return 1
            if body["complete"]:
                break
            print(f"  {sid}: {body['scanned']} profiles read...", file=sys.stderr, flush=True)
        kind = "changed" if body["exists"] else "new"
        print(f"{sid} ({kind}) at {body['at']}, {body['scanned']} profiles:")
        print(f"  size {body['current_size']} -> {body['size']}: {body['entering']} would enter, {body['leaving']} would leave")
        for label, key in (("enter", "enter_sample"), ("leave", "leave_sample"), ("members", "sample")):
            if body[key]:
                print(f"  {label}: " + ", ".join(m["profile_id"] if m["segment_id"] == sid else
                                               f"{m['profile_id']} ({m['segment_id']})" for m in body[key]))
        for warning in body["warnings"]:
            print(f"  warning: {warning}")
    return 0
