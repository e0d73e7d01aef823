"""Request and response shapes of the management API.

They are what GET /openapi.json publishes, and Powertools validates every response against them,
so the document cannot drift from what the handlers return.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from segmentation.domain.catalog import SEGMENT_ID, SegmentSpec

PROFILE_ID = r"^[A-Za-z0-9_-]{1,128}$"


class Error(BaseModel):
    statusCode: int  # noqa: N815 - Powertools' error body
    message: str
    detail: list[dict[str, Any]] | None = None


ERRORS = {
    400: {"description": "Invalid parameters, cursor, body or definition",
          "content": {"application/json": {"model": Error}}},
    404: {"description": "Unknown profile or segment", "content": {"application/json": {"model": Error}}},
    415: {"description": "The body is not application/json", "content": {"application/json": {"model": Error}}},
}


def responses(model: type[BaseModel], *errors: int) -> dict:
    """The documented answers of a route: 200 with ``model`` and the given error statuses (Powertools
    documents only what it is given once ``responses`` is set)."""
    return {200: {"description": "OK", "content": {"application/json": {"model": model}}},
            **{code: ERRORS[code] for code in errors}}


class Consent(BaseModel):
    email: str | None
    email_updated_at: str | None


class ProfileOut(BaseModel):
    profile_id: str
    email: str | None
    segments: list[str]
    traits: dict[str, Any]
    consent: Consent
    evaluated_at: str | None
    next_due_at: str | None
    version: int


class SegmentExplanation(BaseModel):
    member: bool
    condition: dict[str, Any]
    excluded_as_suppressed: bool | None = None


class ExplainOut(BaseModel):
    profile_id: str
    at: str
    catalog_version: str
    segments: dict[str, SegmentExplanation]


class HistoryEntry(BaseModel):
    profile_id: str = Field(description="the profile the change happened to (a merged profile's own id for its past)")
    segment_id: str
    change: str = Field(description="entered or exited")
    at: str
    cause: str = Field(description="the id of the event that caused it, or `time` for the sweep")
    version: int


class HistoryOut(BaseModel):
    profile_id: str
    retention_days: int
    changes: list[HistoryEntry]
    cursor: str | None


class ExportOut(ProfileOut):
    model_config = ConfigDict(extra="allow")

    emails: list[str]
    identities: list[str]
    membership_history: list[HistoryEntry]


class ErasedOut(BaseModel):
    profile_id: str
    erased: bool
    memberships_ended: int


class SegmentSummary(BaseModel):
    id: str
    name: str
    description: str
    size: int
    family: str | None = None


class HealthWarning(BaseModel):
    kind: str = Field(description="too_many_synced, overlap, too_small or high_unsubscribe (docs/measure.md)")
    segments: list[str]
    message: str


class SegmentsOut(BaseModel):
    segments: list[SegmentSummary]
    warnings: list[HealthWarning] = Field(default_factory=list, description="segment health, when asked for")


class MembersOut(BaseModel):
    segment_id: str
    profile_ids: list[str]
    cursor: str | None


class Instance(BaseModel):
    id: str
    size: int


class SegmentOut(BaseModel):
    id: str
    name: str
    description: str
    family: str | None = Field(description="for a family's instance (`<family>:<value>`) or the family itself")
    definition: dict[str, Any] = Field(description="the segment as written in the catalog language")
    size: int
    last_change_at: str | None = Field(description="when a profile last entered or left it")
    instances: list[Instance] | None = Field(default=None, description="a family's instances, with their sizes")
    members: MembersOut | None = Field(description="the first page of members (continue with /members?cursor=)")


class OverlapPair(BaseModel):
    a: str
    b: str
    a_size: int
    b_size: int
    overlap: int
    jaccard: float


class OverlapOut(BaseModel):
    segments: list[str]
    pairs: list[OverlapPair]


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    segment_id: str = Field(pattern=SEGMENT_ID, max_length=64,
                            description="an existing segment to compare with, or a new id")
    definition: SegmentSpec = Field(description="the segment in the catalog language (docs/segments.md)")
    sample: int = Field(default=10, ge=0, le=100, description="how many profile ids to show per list")
    page_size: int = Field(default=5000, ge=1, le=100_000, description="profiles read by this call at most")
    cursor: str | None = Field(default=None, max_length=65_536, description="from the previous call, to go on")


class Member(BaseModel):
    profile_id: str
    segment_id: str


class PreviewOut(BaseModel):
    segment_id: str
    exists: bool = Field(description="false for a new segment: everyone who qualifies enters")
    at: str
    size: int = Field(description="members under the new definition")
    current_size: int = Field(description="members under the current definition, at the same instant")
    entering: int
    leaving: int
    sample: list[Member]
    enter_sample: list[Member]
    leave_sample: list[Member]
    scanned: int = Field(description="profiles read so far (all calls of this preview)")
    complete: bool = Field(description="true once every profile has been read: the figures are final")
    cursor: str | None = Field(description="pass back to read the next profiles")
    warnings: list[str]


class Rate(BaseModel):
    value: float | None = Field(description="the rate of the period's totals; null without a denominator")
    ci95: list[float] | None = Field(description="its 95% Wilson score interval [low, high]")


class Figures(BaseModel):
    delivered: int
    opened: int
    clicked: int
    unsubscribed: int
    bounced: int
    spam: int
    conversions: int
    entered: int
    exited: int
    revenue: str = Field(description="conversions' revenue, in the shop currency")


class DayOut(Figures):
    day: str
    members: int | None = Field(default=None, description="members at the end of the day: the size now, less "
                                                           "the net entries of the later days")


class MetricsOut(BaseModel):
    segment_id: str
    since: str = Field(description="the first day (UTC), the request's `from`")
    until: str = Field(description="the last day (UTC), the request's `to`")
    days: list[DayOut]
    totals: Figures
    rates: dict[str, Rate] = Field(description="open_rate, click_rate, click_to_open_rate, unsubscribe_rate, "
                                                "conversion_rate (conversions per delivered message)")


class SegmentTotals(BaseModel):
    segment_id: str
    size: int = Field(description="members now")
    members: list[int] = Field(description="members at the end of each day of the period (a trend)")
    totals: Figures
    rates: dict[str, Rate]


class AllMetricsOut(BaseModel):
    since: str
    until: str
    segments: list[SegmentTotals] = Field(description="one row per segment and family instance")


class Arm(BaseModel):
    variant: str
    segment_id: str = Field(description="the arm's segment: its bucket and its own definition")
    size: int = Field(description="members now")
    trials: int = Field(description="the metric's denominator over the period (delivered, or opened)")
    successes: int
    rate: float | None
    ci95: list[float] | None = Field(description="the rate's 95% Wilson interval")


class Difference(BaseModel):
    value: float | None = Field(description="the second arm's rate less the first's")
    ci95: list[float] | None = Field(description="its Wald interval at the experiment's alpha")


class ExperimentOut(BaseModel):
    id: str
    name: str
    description: str
    metric: str
    split: int = Field(description="percent of profiles in the first arm")
    segment_id: str = Field(description="the union of the arms: the audience campaigns are sent to")
    arms: list[Arm]
    difference: Difference
    p_value: float | None = Field(description="two-sided two-proportion z test (pooled)")
    min_detectable_effect: float
    alpha: float
    power: float
    needed_per_arm: int | None = Field(description="trials each arm needs to detect min_detectable_effect")
    verdict: str = Field(description="collecting (too few trials: no winner yet), no difference, or the winning variant")
    verdict_text: str


class ExperimentsOut(BaseModel):
    since: str
    until: str
    experiments: list[ExperimentOut]


class CohortFigures(BaseModel):
    customers: int = Field(description="profiles with at least one order")
    repeat_rate: float | None = Field(description="the share of them with two orders or more")
    avg_ltv: str = Field(description="their average lifetime revenue, in the shop currency")


class CohortMonth(CohortFigures):
    month: str = Field(description="the month of the first order, YYYY-MM (UTC)")


class SegmentCohort(BaseModel):
    segment_id: str
    members: CohortFigures
    non_members: CohortFigures


class CohortsOut(BaseModel):
    months: list[CohortMonth]
    segment: SegmentCohort | None = Field(description="members vs non-members of `segment`, if asked")
    scanned: int = Field(description="profiles read so far")
    complete: bool = Field(description="false: send the cursor back for the rest (the figures are partial)")
    cursor: str | None
