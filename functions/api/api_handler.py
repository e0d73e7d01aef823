"""Management API (docs/api.md; contracts in docs/contracts.md): profiles, history, explanations, exports, erasure,
segments, members, previews and overlap, with its OpenAPI document at /openapi.json."""

from __future__ import annotations

import base64
import binascii
import json
import time
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import unquote

from api_models import (
    AllMetricsOut,
    CohortsOut,
    ErasedOut,
    ExperimentOut,
    ExperimentsOut,
    ExplainOut,
    ExportOut,
    HistoryOut,
    MembersOut,
    MetricsOut,
    OverlapOut,
    PreviewIn,
    PreviewOut,
    ProfileOut,
    SegmentOut,
    SegmentsOut,
    responses,
)
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from segmentation import bootstrap
from segmentation.domain.events import normalise_email
from segmentation.domain.profile import Profile, iso
from segmentation.service.ports import InvalidCursorError
from segmentation.settings import load_settings
from segmentation.views import export_view, history_view, profile_view

logger = Logger()
app = APIGatewayHttpResolver(enable_validation=True)

ProfileId = Annotated[str, Path(min_length=1, max_length=128)]
SegmentId = Annotated[str, Path(min_length=1, max_length=200)]
Limit = Annotated[int, Query(ge=1, le=1000, description="page size, 1 to 1000")]
Cursor = Annotated[str | None, Query(max_length=2048, description="the cursor of the previous page")]
#: time a preview keeps for answering after reading profiles (the HTTP API gives 30 s in all)
PREVIEW_MARGIN_S = 4.0


def _profile(profile_id: str) -> Profile:
    profile = bootstrap.repository().get(profile_id)
    if profile is None:
        raise NotFoundError(f"no profile {profile_id}")
    return profile


def _now(profile: Profile | None = None) -> int:
    return max(int(time.time()), (profile.evaluated_at or 0) if profile else 0)


@app.get("/health", summary="Liveness (no authorization)")
def health() -> dict:
    return {"status": "ok"}


@app.get("/profiles", summary="Find a profile by email", responses=responses(ProfileOut, 400, 404))
def find_profile(email: Annotated[str, Query(min_length=3, max_length=320)]) -> ProfileOut:
    """The email is normalised as webhooks' emails are (docs/webhooks.md), so any spelling of a stored
    address finds it; a value that cannot be an address is a 400."""
    try:
        address = normalise_email(email)
    except ValueError:
        address = None
    if address is None:
        raise BadRequestError("email is not a valid email address")
    profile = bootstrap.repository().find(f"email#{address}")
    if profile is None:
        raise NotFoundError("no profile with that email")
    return ProfileOut.model_validate(profile_view(profile))


@app.get("/profiles/<profile_id>", summary="A profile: segments, traits, consent",
         responses=responses(ProfileOut, 400, 404))
def get_profile(profile_id: ProfileId) -> ProfileOut:
    return ProfileOut.model_validate(profile_view(_profile(profile_id)))


@app.get("/profiles/<profile_id>/explain", summary="Why the profile is or is not in each segment",
         responses=responses(ExplainOut, 400, 404))
def explain_profile(profile_id: ProfileId) -> ExplainOut:
    """Per segment: member or not now, and the value of every condition (evaluated now, not stored)."""
    profile = _profile(profile_id)
    now = _now(profile)
    return ExplainOut.model_validate({"profile_id": profile_id, "at": iso(now),
                                      "catalog_version": bootstrap.evaluator().version,
                                      "segments": bootstrap.evaluator().explain(profile, now)})


def _history(profile: Profile, limit: int, cursor: str | None) -> tuple[list[dict], str | None]:
    try:
        page = bootstrap.repository().history_page(profile, int(time.time()), limit, cursor)
    except InvalidCursorError as exc:
        raise BadRequestError(str(exc)) from None
    return history_view(page.changes), page.cursor


@app.get("/profiles/<profile_id>/history", summary="Membership changes, newest first",
         responses=responses(HistoryOut, 400, 404))
def profile_history(profile_id: ProfileId, limit: Limit = 100, cursor: Cursor = None) -> HistoryOut:
    """Every segment entry and exit with its time and cause (an event id, or `time` for the sweep),
    within the retention (the HistoryRetentionDays parameter). Includes the past of profiles merged
    into this one, under their own ids."""
    changes, next_cursor = _history(_profile(profile_id), limit, cursor)
    return HistoryOut(profile_id=profile_id, retention_days=load_settings().history_retention_days,
                      changes=changes, cursor=next_cursor)


@app.get("/profiles/<profile_id>/export", summary="Everything stored about the person",
         responses=responses(ExportOut, 400, 404))
def export_profile(profile_id: ProfileId) -> ExportOut:
    """GDPR access / CCPA right to know: the profile, its identities, events kept, and its history."""
    profile = _profile(profile_id)
    history = bootstrap.profile_service().history(profile)
    return ExportOut.model_validate({**export_view(profile), "membership_history": history})


@app.delete("/profiles/<profile_id>", summary="Erase the person", responses=responses(ErasedOut, 400, 404))
def erase_profile(profile_id: ProfileId) -> ErasedOut:
    """Deletes the profile, its aliases, memberships, history and cart-owner records; keeps only a
    SHA-256 tombstone per identifier so that late webhooks about the person are dropped. Their
    memberships end (SegmentExited on the bus)."""
    ended = bootstrap.profile_service().erase(_profile(profile_id).aliases, cause=f"erasure:{profile_id}")
    logger.info("erased", extra={"profile_id": profile_id, "memberships_ended": len(ended)})
    return ErasedOut(profile_id=profile_id, erased=True, memberships_ended=len(ended))


def _segments():
    from segmentation.service.segments import SegmentQueries

    return SegmentQueries(bootstrap.repository(), bootstrap.evaluator())


Health = Annotated[bool, Query(description="add the health warnings (reads every member of the segments "
                                         "to compare their overlap; false for a quick list)")]


@app.get("/segments", summary="Every segment with its size, and health warnings",
         responses=responses(SegmentsOut, 400))
def list_segments(health: Health = True) -> SegmentsOut:
    """Health warnings (docs/measure.md): more than 10 synced segments, pairs of segments sharing
    more than 80% of their members, segments under MinSegmentSize, and segments whose unsubscribe
    rate over the last 30 days is above the account's beyond doubt."""
    from segmentation.service.health import warnings

    queries = _segments()
    segments = queries.all()
    found: list[dict] = []
    if health:
        synced = {sid for d in bootstrap.destinations().destinations for sid in d.segments}
        today = datetime.now(UTC).date()
        start, end = _period(None, today.isoformat())
        store = bootstrap.metrics_store() if load_settings().metrics_table else None
        experiments = bootstrap.catalog().experiments
        related = {frozenset((eid, arm)) for eid, spec in experiments.items() for _, arm, _ in spec.arms(eid)}
        found = warnings(segments, synced, queries.overlap(segments)["pairs"], store, start, end,
                         load_settings().min_segment_size, related)
    return SegmentsOut.model_validate({"segments": segments, "warnings": found})


@app.get("/segments/overlap", summary="Pairwise overlap of segments (counts and Jaccard index)")
def segment_overlap() -> OverlapOut:
    """Pairwise overlap of the segments with members: counts and Jaccard index (|A∩B| / |A∪B|).

    Segments that overlap almost entirely are rarely worth keeping apart (the guide's advice:
    a few meaningful segments, not many near-duplicates)."""
    return OverlapOut.model_validate(_segments().overlap())


Day = Annotated[str | None, Query(min_length=10, max_length=10, description="a UTC day, YYYY-MM-DD")]
FromDay = Annotated[str | None, Query(alias="from", min_length=10, max_length=10,
                                      description="the first UTC day, YYYY-MM-DD (default: 29 days before `to`)")]


def _period(first: str | None, last: str | None):
    from segmentation.service.segment_metrics import InvalidPeriodError, period

    try:
        return period(first, last, datetime.now(UTC).date())
    except InvalidPeriodError as exc:
        raise BadRequestError(str(exc)) from None


@app.get("/segments/metrics", summary="Every segment's figures and rates over a period (a table)",
         responses=responses(AllMetricsOut, 400))
def all_segment_metrics(from_: FromDay = None, to: Day = None) -> AllMetricsOut:
    """Totals and rates per segment (and family instance) from `from` to `to` (UTC days, inclusive;
    default the last 30 days): docs/measure.md says what each figure counts."""
    from segmentation.service.segment_metrics import report

    start, end = _period(from_, to)
    store, today = bootstrap.metrics_store(), datetime.now(UTC).date()
    rows = []
    for segment in _segments().all():
        r = report(store, segment["id"], start, end, size_now=segment["size"], today=today)
        rows.append({"segment_id": segment["id"], "size": segment["size"],
                     "members": [d["members"] for d in r["days"]], "totals": r["totals"], "rates": r["rates"]})
    return AllMetricsOut.model_validate({"since": start.isoformat(), "until": end.isoformat(), "segments": rows})


@app.post("/segments/preview", summary="Dry-run a new or edited definition (writes nothing)",
          responses=responses(PreviewOut, 400, 415))
def preview_segment(request: Annotated[PreviewIn, Body()]) -> PreviewOut:
    """Evaluates the definition and the current one against every stored profile at one instant:
    the size, a sample, and who would enter and who would leave. Profiles are read until the
    request's time runs short; then `complete` is false and `cursor` goes on from there (send the
    same body with it). The figures of the call that says `complete: true` cover every profile."""
    from segmentation.service.preview import InvalidPreviewError, SegmentPreview

    remaining = app.lambda_context.get_remaining_time_in_millis() / 1000 if app.lambda_context else 25.0
    try:
        out = SegmentPreview(bootstrap.repository(), bootstrap.evaluator()).run(
            request.segment_id, request.definition, request.sample, request.page_size, request.cursor,
            budget_s=max(1.0, remaining - PREVIEW_MARGIN_S))
    except InvalidPreviewError as exc:
        raise BadRequestError(f"invalid definition: {exc}") from None
    return PreviewOut.model_validate(out)


@app.get("/segments/<segment_id>", summary="A segment: definition, size, last change, first members",
         responses=responses(SegmentOut, 400, 404))
def get_segment(segment_id: SegmentId, limit: Limit = 100) -> SegmentOut:
    """The route decodes the id first: it may arrive still percent-encoded (``category-browsers%3Ashoes``,
    as Swagger UI sends a family instance)."""
    from segmentation.service.segments import UnknownSegmentError

    try:
        return SegmentOut.model_validate(_segments().detail(unquote(segment_id), limit))
    except UnknownSegmentError as exc:
        raise NotFoundError(str(exc)) from None


@app.get("/segments/<segment_id>/members", summary="Members, paginated with an opaque cursor",
         responses=responses(MembersOut, 400, 404))
def segment_members(segment_id: SegmentId, limit: Limit = 100, cursor: Cursor = None) -> MembersOut:
    from segmentation.service.segments import NotAListError, UnknownSegmentError

    segment_id = unquote(segment_id)
    try:
        page = _segments().members(segment_id, limit, cursor)
    except (UnknownSegmentError, NotAListError) as exc:
        raise NotFoundError(str(exc)) from None
    except InvalidCursorError as exc:
        raise BadRequestError(str(exc)) from None
    return MembersOut(segment_id=segment_id, profile_ids=page.profile_ids, cursor=page.cursor)


@app.get("/segments/<segment_id>/metrics", summary="A segment's daily figures, totals and rates",
         responses=responses(MetricsOut, 400, 404))
def segment_metrics(segment_id: SegmentId, from_: FromDay = None, to: Day = None) -> MetricsOut:
    """Per UTC day from `from` to `to` (inclusive; default the last 30 days): delivered, opened,
    clicked, unsubscribed, bounced, spam, conversions and their revenue, entered, exited; then the
    totals and the rates with 95% intervals (docs/measure.md)."""
    from segmentation.service.segment_metrics import report
    from segmentation.service.segments import UnknownSegmentError

    segment_id = unquote(segment_id)
    start, end = _period(from_, to)
    try:
        size = _segments().detail(segment_id, 1)["size"]
    except UnknownSegmentError as exc:
        raise NotFoundError(str(exc)) from None
    return MetricsOut.model_validate(report(bootstrap.metrics_store(), segment_id, start, end, size_now=size,
                                            today=datetime.now(UTC).date()))


@app.get("/cohorts", summary="Repeat purchase and lifetime value by first-order month, and for a segment",
         responses=responses(CohortsOut, 400, 404))
def get_cohorts(segment: Annotated[str | None, Query(max_length=200, description="compare its members with "
                                                                                 "the other customers")] = None,
                cursor: Cursor = None) -> CohortsOut:
    """Customers grouped by the month of their first order: how many, the share who ordered again,
    the average lifetime revenue; with `segment`, the same for its members and for the other
    customers. Reads every profile: a request reads until its time runs short, then answers
    `complete: false` with a cursor to send back (docs/measure.md)."""
    from segmentation.service.cohorts import InvalidCohortCursorError, cohorts
    from segmentation.service.segments import UnknownSegmentError

    if segment is not None:
        try:
            _segments().resolve(unquote(segment))
        except UnknownSegmentError as exc:
            raise NotFoundError(str(exc)) from None
    remaining = app.lambda_context.get_remaining_time_in_millis() / 1000 if app.lambda_context else 25.0
    try:
        out = cohorts(bootstrap.repository(), unquote(segment) if segment else None, cursor,
                      budget_s=max(1.0, remaining - PREVIEW_MARGIN_S))
    except InvalidCohortCursorError as exc:
        raise BadRequestError(str(exc)) from None
    return CohortsOut.model_validate(out)


def _experiment_sizes(experiment_ids) -> dict[str, int]:
    store = bootstrap.repository()
    catalog = bootstrap.catalog()
    return {sid: store.segment_size(sid) for eid in experiment_ids
            for _, sid, _ in catalog.experiments[eid].arms(eid)}


@app.get("/experiments", summary="Every experiment on segment definitions, with its report",
         responses=responses(ExperimentsOut, 400))
def list_experiments(from_: FromDay = None, to: Day = None) -> ExperimentsOut:
    """The experiments declared in the catalog: per arm its size, trials, successes and rate with
    its interval; the difference with its interval, the p-value, the trials still needed, and the
    verdict (no winner before each arm has the trials needed). docs/measure.md."""
    from segmentation.service.experiments import experiment_reports

    start, end = _period(from_, to)
    catalog = bootstrap.catalog()
    reports = experiment_reports(catalog, bootstrap.metrics_store(), _experiment_sizes(catalog.experiments),
                                 start, end)
    return ExperimentsOut.model_validate({"since": start.isoformat(), "until": end.isoformat(),
                                          "experiments": reports})


@app.get("/experiments/<experiment_id>", summary="One experiment's report",
         responses=responses(ExperimentOut, 400, 404))
def get_experiment(experiment_id: SegmentId, from_: FromDay = None, to: Day = None) -> ExperimentOut:
    from segmentation.service.experiments import experiment_report

    start, end = _period(from_, to)
    catalog = bootstrap.catalog()
    spec = catalog.experiments.get(experiment_id)
    if spec is None:
        raise NotFoundError(f"no experiment {experiment_id!r} in the catalog")
    return ExperimentOut.model_validate(experiment_report(
        experiment_id, spec, bootstrap.metrics_store(), _experiment_sizes([experiment_id]), start, end))


@app.get("/openapi.json", include_in_schema=False)
def openapi():
    doc = json.loads(app.get_openapi_json_schema(
        title="Segmentation management API", version="1.0.0",
        description="Profiles, segments and privacy requests of the segmentation engine. "
                    "Every route but /health needs AWS_IAM (SigV4) in AWS; the local runner does not check it."))
    # Invalid requests are answered 400 (invalid_request below), never Powertools' default 422.
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    doc.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
    doc.get("components", {}).get("schemas", {}).pop("ValidationError", None)
    return Response(200, content_type="application/json", body=json.dumps(doc))


@app.exception_handler(RecursionError)
def too_deep(_: RecursionError) -> Response:
    # A body nested thousands of levels deep fails JSON decoding itself: refuse it, do not crash.
    return Response(400, content_type="application/json",
                    body=json.dumps({"statusCode": 400, "message": "invalid request: the body nests too deeply"}))


@app.exception_handler(RequestValidationError)
def invalid_request(exc: RequestValidationError) -> Response:
    # 400 (not Powertools' default 422) with the validation messages, as docs/contracts.md promises.
    errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg"))} for e in exc.errors()]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    message = f"invalid request: {'.'.join(first['loc'])}: {first['msg']}"
    return Response(400, content_type="application/json",
                    body=json.dumps({"statusCode": 400, "message": message, "detail": errors}))


def _error(status: int, message: str) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json"},
            "body": json.dumps({"statusCode": status, "message": message})}


def _unreadable_body(event: dict) -> dict | None:
    """A body that is not JSON text is refused before routing: 415 for another content type, 400 for
    bytes that are not UTF-8 (the request validator would otherwise fail on them)."""
    method = event.get("requestContext", {}).get("http", {}).get("method", "GET")
    body = event.get("body")
    if method not in ("POST", "PUT", "PATCH") or not body:
        return None
    content_type = next((v for k, v in (event.get("headers") or {}).items() if k.lower() == "content-type"), "")
    if content_type and not content_type.strip().lower().startswith("application/json"):
        return _error(415, f"send the body as application/json, not {content_type[:100]}")
    try:
        raw = base64.b64decode(body, validate=True) if event.get("isBase64Encoded") else body.encode()
        raw.decode("utf-8")
    except (binascii.Error, UnicodeError):
        return _error(400, "the body is not UTF-8 JSON")
    return None


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict, context) -> dict:
    return _unreadable_body(event) or app.resolve(event, context)
