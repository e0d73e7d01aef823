"""The interface between the use cases and segment evaluation.

``SegmentEvaluator`` is what handlers and services depend on; the catalog evaluator
(:mod:`.evaluation`) implements it. Evaluation is a pure function of (profile, catalog, now).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel, ConfigDict

from .profile import Profile, Retention


class SegmentDefinition(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    description: str
    #: a family is one segment per value seen: members are listed under ``<id>:<value>``
    family: bool = False


@dataclass(frozen=True)
class Evaluation:
    """Memberships and computed traits at ``at``, and the next instant a membership changes."""

    at: int
    segments: frozenset[str]
    traits: dict
    next_due_at: int | None = None


class SegmentEvaluator(Protocol):
    version: str
    retention: Retention

    def definitions(self) -> list[SegmentDefinition]: ...

    def evaluate(self, profile: Profile, now: int, touched: frozenset[str] | None = None) -> Evaluation: ...

    def explain(self, profile: Profile, now: int) -> dict: ...
