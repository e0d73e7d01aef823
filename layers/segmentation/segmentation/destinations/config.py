"""The destinations file: which ESP lists, tags and properties the segments and traits reach.

```yaml
version: 1
destinations:
  - id: klaviyo-main
    type: klaviyo
    segments: {recent-buyers: {list: "XyZ123"}}          # segment id -> Klaviyo list id
    properties: {PreferredCategory: preferred_category}   # property -> trait (or `segments`)
  - id: mailchimp-main
    type: mailchimp
    list: "a1b2c3d4e5"                                    # the audience id
    segments: {recent-buyers: {tag: "Recent Buyers"}}     # segment id -> tag name
    merge_fields: {PREFCAT: preferred_category}           # merge tag -> trait (or `segments`)
  - id: hooks
    type: webhook
    url: "https://example.com/segments"
```

:func:`load_destinations` checks the shape with strict pydantic models (a union discriminated on
``type``), then the file against a catalog (segments and traits exist, no two segments share a
target), and reports every problem with its line: ``destinations.yaml:12: segment 'recent-buyer'
is not in the catalog``. See docs/destinations.md.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..domain.catalog import Catalog
from ..domain.events import normalise_category
from ..errors import InvalidInputError

DESTINATION_ID = re.compile(r"^[a-z0-9-]+$")
#: Mailchimp's merge tags: upper-case letters, digits and '_', at most 10 characters
MERGE_TAG = re.compile(r"^[A-Z0-9_]{1,10}$")
#: the value of a property or merge field that carries the profile's current segment ids
SEGMENTS = "segments"
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


class DestinationsError(InvalidInputError):
    """A destinations file that does not validate: every problem, each as ``file:line: message``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


# -- the models ----------------------------------------------------------------------------------


def _destination_id(value: str) -> str:
    if not DESTINATION_ID.fullmatch(value):
        raise ValueError(f"destination id {value!r} must be lower-case letters, digits and '-'")
    return value


def _merge_tag(value: str) -> str:
    if not MERGE_TAG.fullmatch(value):
        raise ValueError(f"merge tag {value!r} must be 1 to 10 upper-case letters, digits or '_' (Mailchimp's limit)")
    return value


def _webhook_url(value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme == "https" and parts.hostname:
        return value
    if parts.scheme == "http" and parts.hostname in LOCAL_HOSTS:
        return value
    raise ValueError(f"url {value!r} must be https:// (http:// only for 127.0.0.1 or localhost)")


DestinationId = Annotated[str, AfterValidator(_destination_id)]
NonEmpty = Annotated[str, Field(min_length=1)]
MergeTag = Annotated[str, AfterValidator(_merge_tag)]


class Strict(BaseModel):
    # strict: `list: 123` is a mistake (Klaviyo and Mailchimp ids are strings), and so is a typo'd key
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


class KlaviyoList(Strict):
    list_id: NonEmpty = Field(alias="list")


class MailchimpTag(Strict):
    tag: NonEmpty


class KlaviyoDestination(Strict):
    id: DestinationId
    type: Literal["klaviyo"]
    #: segment id -> the Klaviyo list its members are in
    segments: dict[str, KlaviyoList] = Field(default_factory=dict)
    #: Klaviyo custom property -> trait name, or ``segments``
    properties: dict[NonEmpty, str] = Field(default_factory=dict)

    @property
    def fields(self) -> dict[str, str]:
        return self.properties


class MailchimpDestination(Strict):
    id: DestinationId
    type: Literal["mailchimp"]
    #: the audience id
    list_id: NonEmpty = Field(alias="list")
    #: segment id -> the tag its members carry
    segments: dict[str, MailchimpTag] = Field(default_factory=dict)
    #: merge tag -> trait name, or ``segments``
    merge_fields: dict[MergeTag, str] = Field(default_factory=dict)

    @property
    def fields(self) -> dict[str, str]:
        return self.merge_fields


class WebhookDestination(Strict):
    id: DestinationId
    type: Literal["webhook"]
    #: Standard Webhooks signed POST of each membership change
    url: Annotated[str, AfterValidator(_webhook_url)]

    @property
    def segments(self) -> dict[str, Any]:
        return {}

    @property
    def fields(self) -> dict[str, str]:
        return {}


Destination = Annotated[KlaviyoDestination | MailchimpDestination | WebhookDestination, Field(discriminator="type")]
TYPES: dict[str, type[Strict]] = {"klaviyo": KlaviyoDestination, "mailchimp": MailchimpDestination,
                                  "webhook": WebhookDestination}
_DESTINATION: TypeAdapter = TypeAdapter(Destination)


class Destinations(Strict):
    version: Literal[1]
    destinations: list[Destination] = Field(default_factory=list)

    def watched(self) -> frozenset[str]:
        """What the profile path must announce when it changes (``ProfileUpdated``): every trait an
        ESP destination copies, and the email address (the ESP's key) if there is an ESP destination."""
        esp = [d for d in self.destinations if not isinstance(d, WebhookDestination)]
        traits = {t for d in esp for t in d.fields.values() if t != SEGMENTS}
        return frozenset(traits | ({"email"} if esp else set()))

    def get(self, destination_id: str) -> KlaviyoDestination | MailchimpDestination | WebhookDestination:
        """The destination with this id; KeyError if there is none."""
        for d in self.destinations:
            if d.id == destination_id:
                return d
        raise KeyError(destination_id)


# -- loading: lines, shape, catalog ----------------------------------------------------------------

KeyPath = tuple[str, ...]


_KEY_NAMES = {"properties": "property", "merge_fields": "merge field", "segments": "segment"}


class _Lines:
    """The line of every key and list item of a YAML document (by path), and duplicate keys."""

    def __init__(self, root: yaml.Node) -> None:
        self.lines: dict[KeyPath, int] = {(): root.start_mark.line + 1}
        self.duplicates: list[tuple[int, str]] = []
        self._walk(root, (), set())

    def _walk(self, node: yaml.Node, path: KeyPath, seen: set[int]) -> None:
        if id(node) in seen:  # an alias: already walked
            return
        seen = seen | {id(node)}
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key, value in node.value:
                name, line = str(key.value), key.start_mark.line + 1
                if name in first:  # YAML keeps the last one, so its line is the one to report
                    what = _KEY_NAMES.get(path[-1] if path else "", "key")
                    self.duplicates.append((line, f"{what} {name!r} is given twice (first on line {first[name]})"))
                first.setdefault(name, line)
                self.lines[(*path, name)] = line
                self._walk(value, (*path, name), seen)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.lines[(*path, str(i))] = item.start_mark.line + 1
                self._walk(item, (*path, str(i)), seen)

    def line(self, path: tuple) -> int:
        """The line of ``path``, or of the nearest enclosing key or item that has one."""
        parts = tuple(str(p) for p in path)
        while parts not in self.lines:
            parts = parts[:-1]
        return self.lines[parts]


def _field_path(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Check:
    """Collects (line, message) for one file."""

    def __init__(self, lines: _Lines) -> None:
        self.lines = lines
        self.errors: list[tuple[int, str]] = list(lines.duplicates)

    def add(self, path: tuple, message: str) -> None:
        self.errors.append((self.lines.line(path), message))

    def pydantic(self, base: tuple, exc: ValidationError, kind: str | None) -> None:
        model = TYPES.get(kind) if kind else None
        for e in exc.errors():
            loc = tuple(p for p in e["loc"] if p != "[key]")
            if kind and loc and loc[0] == kind:
                loc = loc[1:]  # the union's tag
            parent = _field_path(loc[:-1])
            where = f" in {parent}" if parent else ""
            if e["type"] == "extra_forbidden":
                message = f"unknown key {loc[-1]!r}{where}"
                if model is not None and len(loc) == 1:
                    allowed = ", ".join(f.alias or n for n, f in model.model_fields.items())
                    message += f" (a {kind} destination has: {allowed})"
            elif e["type"] == "missing":
                message = f"missing key {loc[-1]!r}{where}"
            elif e["type"] == "union_tag_not_found":
                message = f"missing key 'type' (one of: {', '.join(TYPES)})"
            elif e["type"] == "union_tag_invalid":
                message = f"type {e['input'].get('type')!r} is not one of: {', '.join(TYPES)}"
                loc = (*loc, "type")
            elif e["type"] == "string_type":
                message = f"{_field_path(loc) or 'value'}: must be text, got {e['input']!r} (put it in quotes)"
            elif e["type"] == "value_error":
                message = e["msg"].removeprefix("Value error, ")
            else:
                message = f"{_field_path(loc) or 'value'}: {e['msg']}"
            self.add(base + loc, message)

    def sorted(self, source: str) -> list[str]:
        return [f"{source}:{line}: {message}" for line, message in sorted(self.errors, key=lambda e: e[0])]


def _mapping(value: Any) -> Iterator[tuple[str, Any]]:
    return iter(value.items()) if isinstance(value, dict) else iter(())


def _segment_problem(segment_id: str, catalog: Catalog) -> str | None:
    """Why ``segment_id`` names no segment of ``catalog`` (a family's instance is ``<family>:<value>``)."""
    family, sep, value = segment_id.partition(":")
    if not sep:
        if segment_id not in catalog.segments:
            return f"segment {segment_id!r} is not in the catalog"
        if catalog.segments[segment_id].family is not None:
            return (f"segment {segment_id!r} is a family: name one of its segments, "
                    f"such as '{segment_id}:<category>'")
        return None
    if family not in catalog.segments:
        return f"segment {segment_id!r} is not in the catalog (no family {family!r})"
    if catalog.segments[family].family is None:
        return f"segment {segment_id!r} is not in the catalog ({family!r} is not a family)"
    if not value or normalise_category(value) != value:
        return (f"segment {segment_id!r}: {value!r} is not a category as segments name it "
                f"(lower-case, '-' for spaces, e.g. {normalise_category(value) or 'shoes'!r})")
    return None


def _check_catalog(check: _Check, base: tuple, raw: dict, catalog: Catalog) -> None:
    """Segments and traits exist in the catalog; no two segments share a list or a tag."""
    kind = raw.get("type")
    if kind not in ("klaviyo", "mailchimp"):
        return
    target_key, what = ("list", "list") if kind == "klaviyo" else ("tag", "tag")
    targets: dict[str, tuple[str, int]] = {}
    for segment_id, target in _mapping(raw.get("segments")):
        path = (*base, "segments", segment_id)
        problem = _segment_problem(str(segment_id), catalog)
        if problem:
            check.add(path, problem)
        value = target.get(target_key) if isinstance(target, dict) else None
        if isinstance(value, str) and value:
            # Mailchimp tags compare case-insensitively
            key = value if kind == "klaviyo" else " ".join(value.split()).casefold()
            if key in targets:
                other, line = targets[key]
                check.add(path, f"{what} {value!r} is already the {what} of segment {other!r} (line {line}): "
                                "one segment per " + what)
            else:
                targets[key] = (str(segment_id), check.lines.line(path))
    fields, label = ("properties", "property") if kind == "klaviyo" else ("merge_fields", "merge field")
    for name, trait in _mapping(raw.get(fields)):
        if isinstance(trait, str) and trait != SEGMENTS and trait not in catalog.traits:
            check.add((*base, fields, name), f"{label} {name!r}: {trait!r} is not a computed trait of the catalog "
                                             f"(nor {SEGMENTS!r}, the segment ids)")


def _check_destination(check: _Check, base: tuple, raw: Any) -> Any:
    """The destination's model, or None after recording why it is not valid."""
    if not isinstance(raw, dict):
        check.add(base, "a destination must be a mapping with 'id' and 'type'")
        return None
    kind = raw.get("type") if isinstance(raw.get("type"), str) else None
    try:
        parsed = _DESTINATION.validate_python(raw)
    except ValidationError as exc:
        check.pydantic(base, exc, kind)
        return None
    if not (parsed.segments or parsed.fields) and parsed.type != "webhook":
        fields = "properties" if parsed.type == "klaviyo" else "merge_fields"
        check.add(base, f"destination {parsed.id!r} sends nothing: give segments, {fields} or both")
    return parsed


def load_destinations(text: str, catalog: Catalog, source_name: str = "destinations.yaml") -> Destinations:
    """Parse and check a destinations file against ``catalog``; raises :class:`DestinationsError`
    listing every problem as ``<source_name>:<line>: <message>``."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        root = yaml.compose(text, Loader=loader)
        data = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"{mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DestinationsError([f"{source_name}:{line} not valid YAML: {problem}"]) from None
    if root is None or not isinstance(data, dict):
        line = root.start_mark.line + 1 if root is not None else 1
        raise DestinationsError([f"{source_name}:{line}: the file must be a mapping with 'version' and 'destinations'"])
    check = _Check(_Lines(root))
    for key in data:
        if key not in ("version", "destinations"):
            check.add((key,), f"unknown key {key!r} (the file has: version, destinations)")
    if "version" not in data:
        check.add((), "missing key 'version' (version: 1)")
    elif data["version"] != 1 or isinstance(data["version"], bool):
        check.add(("version",), f"version {data['version']!r} is not supported (version: 1)")
    raw_list = data.get("destinations")
    if raw_list is None:
        check.add(("destinations",) if "destinations" in data else (), "missing key 'destinations' (a list)")
        raw_list = []
    elif not isinstance(raw_list, list):
        check.add(("destinations",), "destinations must be a list")
        raw_list = []
    parsed = []
    ids: dict[str, int] = {}
    for i, raw in enumerate(raw_list):
        base = ("destinations", i)
        parsed.append(_check_destination(check, base, raw))
        if not isinstance(raw, dict):
            continue
        did = raw.get("id")
        if isinstance(did, str):
            if did in ids:
                check.add((*base, "id"), f"destination id {did!r} is used twice (first on line {ids[did]})")
            else:
                ids[did] = check.lines.line((*base, "id"))
        _check_catalog(check, base, raw, catalog)
    if check.errors:
        raise DestinationsError(check.sorted(source_name))
    return Destinations(version=1, destinations=parsed)
