"""`segctl destinations validate FILE [--catalog CATALOG_FILE]`: check a destinations file."""

from __future__ import annotations

import sys
from pathlib import Path

from segmentation.destinations.config import SEGMENTS, DestinationsError, load_destinations
from segmentation.domain.catalog import DEFAULT_CATALOG, CatalogError, load_catalog


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def summary(destination) -> str:
    """One line: the destination's type, how many segments it receives and which traits."""
    if destination.type == "webhook":
        return f"  {destination.id}: webhook, every segment change to {destination.url}"
    fields = destination.fields
    traits = sorted({t for t in fields.values() if t != SEGMENTS})
    where = f"audience {destination.list_id}, " if destination.type == "mailchimp" else ""
    target = "lists" if destination.type == "klaviyo" else "tags"
    line = (f"  {destination.id}: {destination.type}, {where}{_plural(len(destination.segments), 'segment')} "
            f"(as {target}), {_plural(len(traits), 'trait')}")
    if SEGMENTS in fields.values():
        line += " + the segment ids"
    return line


def validate(path: str, catalog_path: str | None) -> int:
    """0 and a line per destination when ``path`` is valid; 2 and every error on stderr otherwise."""
    try:
        catalog = load_catalog(catalog_path)
    except CatalogError as exc:
        print(f"segctl: the catalog is not valid:\n{exc}", file=sys.stderr)
        return 2
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        print(f"segctl: {path}: cannot read the destinations file: {reason}", file=sys.stderr)
        return 2
    try:
        destinations = load_destinations(text, catalog, path)
    except DestinationsError as exc:
        print(f"segctl: {path} is not valid ({_plural(len(exc.errors), 'error')}):", file=sys.stderr)
        print("\n".join(exc.errors), file=sys.stderr)
        return 2
    print(f"{path}: valid, {_plural(len(destinations.destinations), 'destination')} "
          f"(catalog {catalog_path or DEFAULT_CATALOG.name}, version {catalog.version})")
    for destination in destinations.destinations:
        print(summary(destination))
    return 0
