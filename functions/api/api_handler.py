"""Management API (design.md §3.3): profiles, segments, members, erasure."""

from __future__ import annotations

import json
import time
from typing import Annotated

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import BadRequestError, NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.logging import correlation_paths
from segmentation import bootstrap
from segmentation.adapters.repository import InvalidCursorError
from segmentation.domain.profile import Profile, iso
from segmentation.views import export_view, profile_view

logger = Logger()
app = APIGatewayHttpResolver(enable_validation=True)


def _profile(profile_id: str) -> Profile:
    profile = bootstrap.repository().get(profile_id)
    if profile is None:
        raise NotFoundError(f"no profile {profile_id}")
    return profile


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


@app.get("/profiles")
def find_profile(email: Annotated[str, Query(min_length=3, max_length=320)]) -> dict:
    profile = bootstrap.repository().find(f"email#{email.strip().lower()}")
    if profile is None:
        raise NotFoundError("no profile with that email")
    return profile_view(profile)


@app.get("/profiles/<profile_id>")
def get_profile(profile_id: str) -> dict:
    return profile_view(_profile(profile_id))


@app.get("/profiles/<profile_id>/explain")
def explain_profile(profile_id: str) -> dict:
    """Per segment: member or not now, and the value of every condition (evaluated now, not stored)."""
    profile = _profile(profile_id)
    now = max(int(time.time()), profile.evaluated_at or 0)
    return {"profile_id": profile_id, "at": iso(now), "catalog_version": bootstrap.evaluator().version,
            "segments": bootstrap.evaluator().explain(profile, now)}


@app.get("/profiles/<profile_id>/export")
def export_profile(profile_id: str) -> dict:
    """Everything stored about the person (GDPR access, CCPA right to know)."""
    return export_view(_profile(profile_id))


@app.delete("/profiles/<profile_id>")
def erase_profile(profile_id: str) -> dict:
    bootstrap.repository().erase(_profile(profile_id))
    logger.info("erased", extra={"profile_id": profile_id})
    return {"profile_id": profile_id, "erased": True}


@app.get("/segments")
def list_segments() -> dict:
    repo = bootstrap.repository()
    segments = []
    for d in bootstrap.evaluator().definitions():
        if not d.family:
            segments.append({**d.model_dump(exclude={"family"}), "size": repo.segment_size(d.id)})
            continue
        # A family is listed as one segment per value it has had members for.
        for value in repo.family_values(d.id):
            sid = f"{d.id}:{value}"
            segments.append({"id": sid, "name": f"{d.name}: {value}", "description": d.description,
                             "family": d.id, "size": repo.segment_size(sid)})
    return {"segments": segments}


@app.get("/segments/overlap")
def segment_overlap() -> dict:
    """Pairwise overlap of the segments with members: counts and Jaccard index (|A∩B| / |A∪B|).

    Segments that overlap almost entirely are rarely worth keeping apart (the guide's advice:
    a few meaningful segments, not many near-duplicates)."""
    repo = bootstrap.repository()
    ids = [s["id"] for s in list_segments()["segments"] if s["size"] > 0]
    members = {sid: repo.all_members(sid) for sid in ids}
    pairs = []
    for i, a in enumerate(ids):
        for b in ids[i + 1:]:
            both = len(members[a] & members[b])
            either = len(members[a] | members[b])
            if both:
                pairs.append({"a": a, "b": b, "a_size": len(members[a]), "b_size": len(members[b]),
                              "overlap": both, "jaccard": round(both / either, 4)})
    pairs.sort(key=lambda p: (-p["jaccard"], p["a"], p["b"]))
    return {"segments": ids, "pairs": pairs}


@app.get("/openapi.json", include_in_schema=False)
def openapi():
    body = app.get_openapi_json_schema(title="Segmentation management API", version="1.0.0")
    return Response(200, content_type="application/json", body=body)


def _known_segment(segment_id: str) -> bool:
    base, _, value = segment_id.partition(":")
    for d in bootstrap.evaluator().definitions():
        if d.id == base and bool(value) == d.family:
            return True
    return False


@app.get("/segments/<segment_id>/members")
def segment_members(
    segment_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> dict:
    if not _known_segment(segment_id):
        raise NotFoundError(f"no segment {segment_id}")
    try:
        page = bootstrap.repository().members(segment_id, limit, cursor)
    except InvalidCursorError as exc:
        raise BadRequestError(str(exc)) from None
    return {"segment_id": segment_id, "profile_ids": page.profile_ids, "cursor": page.cursor}


@app.exception_handler(RequestValidationError)
def invalid_request(exc: RequestValidationError) -> Response:
    # 400 (not Powertools' default 422) with the validation messages, as design.md §3 promises.
    errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg")} for e in exc.errors()]
    return Response(400, content_type="application/json", body=json.dumps({"error": "invalid_request", "detail": errors}))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
def lambda_handler(event: dict, context) -> dict:
    return app.resolve(event, context)
