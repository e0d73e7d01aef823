"""Reading segments: the list with sizes (families expanded), one segment's detail, its members, and
pairwise overlap. The management API's segment routes are thin wrappers around this."""

from __future__ import annotations

from dataclasses import dataclass

from ..domain.catalog import SegmentSpec
from ..domain.evaluation import CatalogEvaluator
from ..domain.profile import iso
from ..errors import InvalidInputError, NotFoundError
from .ports import MembersPage, ProfileStore


class UnknownSegmentError(NotFoundError):
    """No such segment (or a family value no profile has ever been in)."""


class NotAListError(InvalidInputError):
    """A family id where a segment instance is needed (its members are per instance)."""


@dataclass(frozen=True)
class Resolved:
    """A segment id resolved against the catalog: ``x``, a family ``f`` or one of its instances ``f:v``."""

    spec: SegmentSpec
    family: str | None  # the family id, when the id is a family or one of its instances


class SegmentQueries:
    def __init__(self, store: ProfileStore, evaluator: CatalogEvaluator) -> None:
        self.store = store
        self.evaluator = evaluator

    def all(self) -> list[dict]:
        """Every segment with its size; a family is listed as one segment per value it has had members for."""
        segments = []
        for d in self.evaluator.definitions():
            if not d.family:
                segments.append({**d.model_dump(exclude={"family"}), "size": self.store.segment_size(d.id)})
                continue
            for value in self.store.family_values(d.id):
                sid = f"{d.id}:{value}"
                segments.append({"id": sid, "name": f"{d.name}: {value}", "description": d.description,
                                 "family": d.id, "size": self.store.segment_size(sid)})
        return segments

    def overlap(self, segments: list[dict] | None = None) -> dict:
        """Pairwise overlap of the segments with members: counts and Jaccard index (|A∩B| / |A∪B|),
        most overlapping first. Segments that overlap almost entirely are rarely worth keeping apart.
        ``segments``: :meth:`all`'s list, if the caller has it already."""
        ids = [s["id"] for s in (self.all() if segments is None else segments) if s["size"] > 0]
        members = {sid: self.store.all_members(sid) for sid in ids}
        pairs = []
        for i, a in enumerate(ids):
            for b in ids[i + 1:]:
                both = len(members[a] & members[b])
                if both:
                    pairs.append({"a": a, "b": b, "a_size": len(members[a]), "b_size": len(members[b]),
                                  "overlap": both, "jaccard": round(both / len(members[a] | members[b]), 4)})
        pairs.sort(key=lambda p: (-p["jaccard"], p["a"], p["b"]))
        return {"segments": ids, "pairs": pairs}

    def resolve(self, segment_id: str) -> Resolved:
        base, _, value = segment_id.partition(":")
        spec = self.evaluator.catalog.segments.get(base)
        if spec is None or (value and spec.family is None):
            raise UnknownSegmentError(f"no segment {segment_id}")
        if value and value not in self.store.family_values(base):
            raise UnknownSegmentError(f"no segment {segment_id}: no profile has been in {base} for {value!r}")
        return Resolved(spec, base if spec.family is not None else None)

    def detail(self, segment_id: str, limit: int) -> dict:
        """Definition, size, last change and the first page of members; for a family, its instances."""
        found = self.resolve(segment_id)
        spec, family = found.spec, found.family
        base = {"id": segment_id, "description": spec.description, "family": family,
                "definition": spec.model_dump(mode="json", by_alias=True, exclude_none=True)}
        if segment_id == family:
            stats = {f"{family}:{v}": self.store.segment_stats(f"{family}:{v}") for v in self.store.family_values(family)}
            last = max((st.last_change_at for st in stats.values() if st.last_change_at), default=None)
            return {**base, "name": spec.name, "size": sum(st.size for st in stats.values()),
                    "last_change_at": iso(last), "members": None,
                    "instances": [{"id": sid, "size": st.size} for sid, st in stats.items()]}
        name = f"{spec.name}: {segment_id.partition(':')[2]}" if family else spec.name
        stats = self.store.segment_stats(segment_id)
        page = self.store.members(segment_id, limit, None)
        return {**base, "name": name, "size": stats.size, "last_change_at": iso(stats.last_change_at),
                "members": {"segment_id": segment_id, "profile_ids": page.profile_ids, "cursor": page.cursor}}

    def members(self, segment_id: str, limit: int, cursor: str | None) -> MembersPage:
        """One page of members; the cursor is the store's (an invalid one raises its InvalidCursorError)."""
        if segment_id == self.resolve(segment_id).family:
            raise NotAListError(f"{segment_id} is a family: list the members of one of its instances ({segment_id}:<value>)")
        return self.store.members(segment_id, limit, cursor)
