"""The fake Klaviyo itself (tools/segctl/espfakes/klaviyo.py): state, refusals and injected faults."""

from __future__ import annotations

import json
import time

import pytest
import urllib3
from segctl.espfakes.klaviyo import REVISION, FakeKlaviyo, openapi

HTTP = urllib3.PoolManager(retries=False)


def call(
    fake: FakeKlaviyo, method: str, path: str, body: object = None, **headers: str | None
) -> urllib3.BaseHTTPResponse:
    sent = {k: v for k, v in {**fake.headers(), **headers}.items() if v is not None}
    data = None if body is None else json.dumps(body).encode()
    return HTTP.request(method, fake.base_url + path, body=data, headers=sent)


def bulk_import(*profiles: dict, lists: tuple[str, ...] = ()) -> dict:
    body: dict = {
        "data": {
            "type": "profile-bulk-import-job",
            "attributes": {"profiles": {"data": [{"type": "profile", "attributes": p} for p in profiles]}},
        }
    }
    if lists:
        body["data"]["relationships"] = {"lists": {"data": [{"type": "list", "id": i} for i in lists]}}
    return body


def relationship(*profile_ids: str) -> dict:
    return {"data": [{"type": "profile", "id": i} for i in profile_ids]}


@pytest.fixture
def fake(fake_klaviyo: FakeKlaviyo):
    yield fake_klaviyo
    assert fake_klaviyo.response_errors == [], "the fake answered something Klaviyo's document does not allow"


def test_the_document_loads_once_and_fast():
    started = time.perf_counter()
    assert openapi() is openapi()
    assert time.perf_counter() - started < 5
    assert openapi().spec["info"]["version"] == REVISION


def test_bulk_import_applies_profiles_and_properties_and_reports_a_job(fake):
    vip = fake.create_list("VIP")
    answer = call(
        fake,
        "POST",
        "/api/profile-bulk-import-jobs",
        bulk_import(
            {"email": "ann@example.com", "first_name": "Ann", "properties": {"segment_vip": True, "ltv": 120.5}},
            {"email": "bob@example.com", "properties": {"segment_vip": False}},
            lists=(vip,),
        ),
    )
    assert answer.status == 202
    job = answer.json()["data"]
    assert job["type"] == "profile-bulk-import-job"
    assert job["attributes"]["total_count"] == 2

    fetched = call(fake, "GET", f"/api/profile-bulk-import-jobs/{job['id']}")
    assert fetched.status == 200
    assert fetched.json()["data"]["attributes"]["status"] == "complete"
    assert fake.profile_by_email("ann@example.com")["properties"] == {"segment_vip": True, "ltv": 120.5}
    assert fake.profile_by_email("ann@example.com")["first_name"] == "Ann"
    assert fake.members(vip) == {"ann@example.com", "bob@example.com"}

    # a second import merges properties into the same profile
    call(
        fake,
        "POST",
        "/api/profile-bulk-import-jobs",
        bulk_import({"email": "ann@example.com", "properties": {"ltv": 130}}),
    )
    assert fake.profile_by_email("ann@example.com")["properties"] == {"segment_vip": True, "ltv": 130}
    assert len(fake.snapshot()["profiles"]) == 2

    # null writes nothing in a bulk import; meta.patch_properties.unset removes a property
    call(fake, "POST", "/api/profile-bulk-import-jobs",
         bulk_import({"email": "ann@example.com", "first_name": None, "properties": {"ltv": None}}))
    assert fake.profile_by_email("ann@example.com")["properties"] == {"segment_vip": True, "ltv": 130}
    assert fake.profile_by_email("ann@example.com")["first_name"] == "Ann"
    unset = bulk_import({"email": "ann@example.com"})
    unset["data"]["attributes"]["profiles"]["data"][0]["meta"] = {"patch_properties": {"unset": ["ltv"]}}
    assert call(fake, "POST", "/api/profile-bulk-import-jobs", unset).status == 202
    assert fake.profile_by_email("ann@example.com")["properties"] == {"segment_vip": True}
    assert fake.invalid == []


def test_profile_import_create_update_and_unset_properties(fake):
    created = call(
        fake,
        "POST",
        "/api/profile-import",
        {"data": {"type": "profile", "attributes": {"email": "c@example.com", "properties": {"a": 1, "b": 2}}}},
    )
    assert created.status == 201
    profile_id = created.json()["data"]["id"]
    again = call(
        fake,
        "POST",
        "/api/profile-import",
        {"data": {"type": "profile", "attributes": {"email": "c@example.com", "properties": {"a": 3}}}},
    )
    assert again.status == 200 and again.json()["data"]["id"] == profile_id
    patched = call(
        fake,
        "PATCH",
        f"/api/profiles/{profile_id}",
        {
            "data": {
                "type": "profile",
                "id": profile_id,
                "attributes": {},
                "meta": {"patch_properties": {"unset": ["b"]}},
            }
        },
    )
    assert patched.status == 200
    assert fake.profile_by_email("c@example.com")["properties"] == {"a": 3}
    duplicate = call(
        fake, "POST", "/api/profiles", {"data": {"type": "profile", "attributes": {"email": "c@example.com"}}}
    )
    assert duplicate.status == 409
    assert duplicate.json()["errors"][0]["meta"]["duplicate_profile_id"] == profile_id
    found = call(fake, "GET", "/api/profiles?filter=equals(email,'c@example.com')")
    assert [p["id"] for p in found.json()["data"]] == [profile_id]


def test_adding_and_removing_list_relationships_changes_the_members(fake):
    segment = fake.create_list("Segment: lapsed buyers")
    call(
        fake,
        "POST",
        "/api/profile-bulk-import-jobs",
        bulk_import({"email": "a@example.com"}, {"email": "b@example.com"}, {"email": "c@example.com"}),
    )
    ids = {email: fake.profile_by_email(email)["id"] for email in ("a@example.com", "b@example.com", "c@example.com")}

    added = call(fake, "POST", f"/api/lists/{segment}/relationships/profiles", relationship(*ids.values()))
    assert added.status == 204
    assert fake.members(segment) == set(ids)

    removed = call(fake, "DELETE", f"/api/lists/{segment}/relationships/profiles", relationship(ids["b@example.com"]))
    assert removed.status == 204
    assert fake.members(segment) == {"a@example.com", "c@example.com"}

    listed = call(fake, "GET", f"/api/lists/{segment}/relationships/profiles")
    assert {item["id"] for item in listed.json()["data"]} == {ids["a@example.com"], ids["c@example.com"]}
    page = call(fake, "GET", f"/api/lists/{segment}/profiles?page[size]=1")
    assert [p["attributes"]["email"] for p in page.json()["data"]] == ["a@example.com"]
    rest = HTTP.request("GET", page.json()["links"]["next"], headers=fake.headers())
    assert [p["attributes"]["email"] for p in rest.json()["data"]] == ["c@example.com"]
    assert "next" not in rest.json()["links"]
    assert fake.call_count("POST", f"/api/lists/{segment}/relationships/profiles") == 1
    assert fake.invalid == []


def test_unknown_list_or_profile_is_not_found(fake):
    assert call(fake, "POST", "/api/lists/NOPE/relationships/profiles", relationship("01X")).status == 404
    segment = fake.create_list("S")
    assert call(fake, "POST", f"/api/lists/{segment}/relationships/profiles", relationship("01MISSING")).status == 404
    assert fake.members(segment) == set()


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [
        pytest.param(
            "POST",
            "/api/profile-import",
            {"data": {"type": "profile", "attributes": {"email": "x@example.com"}}},
            {"revision": None},
            400,
            id="no-revision",
        ),
        pytest.param(
            "POST",
            "/api/profile-import",
            {"data": {"type": "profile", "attributes": {"email": "x@example.com"}}},
            {"revision": "2024-10-15"},
            400,
            id="old-revision",
        ),
        pytest.param(
            "POST",
            "/api/profile-import",
            {"data": {"type": "list", "attributes": {"email": "x@example.com"}}},
            {},
            400,
            id="data-type-not-profile",
        ),
        pytest.param(
            "POST",
            "/api/profile-import",
            {"type": "profile", "attributes": {"email": "x@example.com"}},
            {},
            400,
            id="no-data",
        ),
        pytest.param(
            "POST",
            "/api/profile-bulk-import-jobs",
            {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": [{"email": "x@example.com"}]}}},
            {},
            400,
            id="profiles-not-a-document",
        ),
        pytest.param(
            "POST",
            "/api/lists/L1/relationships/profiles",
            {"data": {"type": "profile", "id": "01X"}},
            {},
            400,
            id="relationship-not-an-array",
        ),
        pytest.param(
            "POST",
            "/api/profile-import",
            {"data": {"type": "profile", "attributes": {"email": "x@example.com"}}},
            {"Content-Type": "application/json"},
            400,
            id="plain-json",
        ),
        pytest.param("GET", "/api/profiles?page[size]=500", None, {}, 400, id="page-too-big"),
        pytest.param("POST", "/api/segments-sync", {"data": {}}, {}, 404, id="unknown-path"),
        pytest.param("PUT", "/api/profiles", {"data": {}}, {}, 405, id="unknown-method"),
        pytest.param(
            "POST",
            "/api/profile-import",
            {"data": {"type": "profile", "attributes": {"email": "x@example.com"}}},
            {"Authorization": "Klaviyo-API-Key wrong"},
            401,
            id="bad-key",
        ),
        pytest.param(
            "POST",
            "/api/profile-import",
            {"data": {"type": "profile", "attributes": {"email": "x@example.com"}}},
            {"Authorization": None},
            401,
            id="no-key",
        ),
        pytest.param(
            "POST",
            "/api/profile-import",
            {"data": {"type": "profile", "attributes": {"email": "x@example.com"}}},
            {"Authorization": "Bearer " + "k"},
            401,
            id="bearer",
        ),
    ],
)
def test_invalid_requests_are_refused_recorded_and_change_nothing(fake, method, path, body, headers, status):
    fake.create_list("L", list_id="L1")
    before = fake.snapshot()
    answer = call(fake, method, path, body, **headers)
    assert answer.status == status
    assert answer.json()["errors"][0]["detail"]
    assert [(r.method, r.path, r.status) for r in fake.invalid] == [(method, path.split("?")[0], status)]
    assert fake.snapshot() == before
    assert fake.call_count() == 1


def test_429_injection_answers_retry_after_and_changes_nothing(fake):
    segment = fake.create_list("S")
    call(fake, "POST", "/api/profile-bulk-import-jobs", bulk_import({"email": "a@example.com", "properties": {"p": 1}}))
    before = fake.snapshot()
    fake.fail_next(2, status=429, retry_after=3)
    body = bulk_import(
        {"email": "a@example.com", "properties": {"p": 2}}, {"email": "new@example.com"}, lists=(segment,)
    )
    for _ in range(2):
        throttled = call(fake, "POST", "/api/profile-bulk-import-jobs", body)
        assert throttled.status == 429
        assert throttled.headers["Retry-After"] == "3"
        assert throttled.json()["errors"][0]["code"] == "throttled"
        assert fake.snapshot() == before
    assert call(fake, "POST", "/api/profile-bulk-import-jobs", body).status == 202
    assert fake.profile_by_email("a@example.com")["properties"] == {"p": 2}
    assert fake.members(segment) == {"a@example.com", "new@example.com"}
    assert fake.call_count("POST", "/api/profile-bulk-import-jobs") == 4
    assert [c.status for c in fake.calls] == [202, 429, 429, 202]
    assert fake.invalid == []


def test_5xx_burst_then_success(fake):
    segment = fake.create_list("S")
    call(fake, "POST", "/api/profile-import", {"data": {"type": "profile", "attributes": {"email": "a@example.com"}}})
    profile_id = fake.profile_by_email("a@example.com")["id"]
    before = fake.snapshot()
    fake.fail_next(3, status=503)
    statuses = [
        call(fake, "POST", f"/api/lists/{segment}/relationships/profiles", relationship(profile_id)).status
        for _ in range(4)
    ]
    assert statuses == [503, 503, 503, 204]
    assert "Retry-After" not in call(fake, "GET", f"/api/lists/{segment}/profiles").headers
    assert before["lists"]["S"] == [] and fake.members(segment) == {"a@example.com"}


def test_invalid_requests_do_not_use_up_injected_faults(fake):
    fake.fail_next(1, status=429)
    assert call(fake, "POST", "/api/profile-import", {"data": {"type": "list"}}).status == 400
    assert (
        call(
            fake, "POST", "/api/profile-import", {"data": {"type": "profile", "attributes": {"email": "a@example.com"}}}
        ).status
        == 429
    )
    assert (
        call(
            fake, "POST", "/api/profile-import", {"data": {"type": "profile", "attributes": {"email": "a@example.com"}}}
        ).status
        == 201
    )


def test_stops_cleanly_and_frees_the_port():
    fake = FakeKlaviyo().start()
    url = fake.base_url
    assert HTTP.request("GET", url + "/api/profiles", headers=fake.headers()).status == 200
    fake.stop()
    with pytest.raises(urllib3.exceptions.HTTPError):
        urllib3.PoolManager(retries=False).request("GET", url + "/api/profiles", headers=fake.headers(), timeout=2)


def test_lists_are_created_found_by_name_and_deleted(fake):
    created = call(fake, "POST", "/api/lists", {"data": {"type": "list", "attributes": {"name": "Segment: VIP"}}})
    assert created.status == 201
    list_id = created.json()["data"]["id"]
    fake.create_list("Other")
    found = call(fake, "GET", "/api/lists?filter=equals(name,%22Segment:%20VIP%22)")
    assert [item["id"] for item in found.json()["data"]] == [list_id]
    assert call(fake, "GET", f"/api/lists/{list_id}").json()["data"]["attributes"]["name"] == "Segment: VIP"
    assert call(fake, "DELETE", f"/api/lists/{list_id}").status == 204
    assert call(fake, "GET", f"/api/lists/{list_id}").status == 404
    assert sorted(fake.snapshot()["lists"]) == ["Other"]
    assert call(fake, "GET", "/api/lists?filter=greater-than(created,2026-01-01)").status == 400
    assert fake.invalid == []


def test_suppression_jobs_and_unsubscribes_in_klaviyo(fake):
    call(
        fake,
        "POST",
        "/api/profile-bulk-import-jobs",
        bulk_import({"email": "a@example.com"}, {"email": "b@example.com"}),
    )

    def suppression(kind: str, *emails: str) -> dict:
        profiles = [{"type": "profile", "attributes": {"email": e}} for e in emails]
        return {"data": {"type": kind, "attributes": {"profiles": {"data": profiles}}}}

    job = call(
        fake,
        "POST",
        "/api/profile-suppression-bulk-create-jobs",
        suppression("profile-suppression-bulk-create-job", "a@example.com", "nobody@example.com"),
    )
    assert job.status == 202
    assert job.json()["data"]["attributes"]["skipped_count"] == 1
    assert fake.profile_by_email("a@example.com")["suppressed"] is True
    assert fake.profile_by_email("b@example.com")["suppressed"] is False

    fake.suppress("b@example.com")
    assert fake.snapshot()["profiles"]["b@example.com"]["suppressed"] is True

    undone = call(
        fake,
        "POST",
        "/api/profile-suppression-bulk-delete-jobs",
        suppression("profile-suppression-bulk-delete-job", "a@example.com"),
    )
    assert undone.status == 202
    assert fake.profile_by_email("a@example.com")["suppressed"] is False
    wrong_type = suppression("profile-suppression-bulk-delete-job", "a@example.com")
    assert call(fake, "POST", "/api/profile-suppression-bulk-create-jobs", wrong_type).status == 400
    assert len(fake.invalid) == 1


def test_the_refusal_names_the_field_not_the_whole_body(fake):
    profiles = [{"email": f"p{i}@example.com"} for i in range(200)]
    body = bulk_import(*profiles)
    body["data"]["attributes"]["profiles"]["data"][150]["type"] = "list"
    refused = call(fake, "POST", "/api/profile-bulk-import-jobs", body)
    assert refused.status == 400
    detail = refused.json()["errors"][0]["detail"]
    assert "data/attributes/profiles/data/150/type: 'list' is not one of ['profile']" in detail
    assert len(detail) < 500
    assert fake.invalid[0].reason == detail
    assert fake.snapshot()["profiles"] == {}


def test_an_email_change_moves_the_profile(fake):
    created = call(
        fake, "POST", "/api/profile-import", {"data": {"type": "profile", "attributes": {"email": "old@example.com"}}}
    )
    profile_id = created.json()["data"]["id"]
    changed = call(
        fake,
        "PATCH",
        f"/api/profiles/{profile_id}",
        {"data": {"type": "profile", "id": profile_id, "attributes": {"email": "new@example.com"}}},
    )
    assert changed.status == 200
    assert fake.profile_by_email("old@example.com") is None
    assert fake.profile_by_email("new@example.com")["id"] == profile_id
    again = call(
        fake, "POST", "/api/profile-import", {"data": {"type": "profile", "attributes": {"email": "new@example.com"}}}
    )
    assert again.status == 200 and again.json()["data"]["id"] == profile_id


def test_concurrent_requests_all_land(fake):
    from concurrent.futures import ThreadPoolExecutor

    segment = fake.create_list("S")
    emails = [f"p{i}@example.com" for i in range(40)]

    def upsert_and_add(email: str) -> tuple[int, int]:
        body = {"data": {"type": "profile", "attributes": {"email": email, "properties": {"n": email}}}}
        created = call(fake, "POST", "/api/profile-import", body)
        added = call(
            fake, "POST", f"/api/lists/{segment}/relationships/profiles", relationship(created.json()["data"]["id"])
        )
        return created.status, added.status

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(upsert_and_add, emails))
    assert results == [(201, 204)] * len(emails)
    assert fake.members(segment) == set(emails)
    assert fake.call_count() == 2 * len(emails)
    assert fake.invalid == []


def test_any_filter_sparse_fieldsets_and_next_links_that_keep_them(fake):
    segment = fake.create_list("S")
    call(fake, "POST", "/api/profile-bulk-import-jobs",
         bulk_import(*({"email": f"p{i}@example.com", "first_name": "P"} for i in range(5)), lists=(segment,)))
    query = "filter=any(email,%5B%22p1@example.com%22,'p3@example.com',%22nobody@example.com%22%5D)"
    found = call(fake, "GET", f"/api/profiles?{query}&fields[profile]=email&page[size]=1")
    assert found.status == 200
    first = found.json()
    assert [p["attributes"] for p in first["data"]] == [{"email": "p1@example.com"}]
    rest = HTTP.request("GET", first["links"]["next"], headers=fake.headers()).json()
    assert [p["attributes"] for p in rest["data"]] == [{"email": "p3@example.com"}]
    assert "next" not in rest["links"]
    members = call(fake, "GET", f"/api/lists/{segment}/profiles?fields[profile]=email&page[size]=100").json()
    assert {tuple(sorted(p["attributes"])) for p in members["data"]} == {("email", "joined_group_at")}
    assert call(fake, "GET", "/api/profiles?filter=any(email,%5Bp1@example.com%5D)").status == 400  # unquoted
    assert fake.invalid == []


def test_bulk_import_refuses_bad_profiles_as_klaviyo_does_and_applies_none(fake):
    segment = fake.create_list("S")
    before = fake.snapshot()
    bad = call(fake, "POST", "/api/profile-bulk-import-jobs", bulk_import(
        {"email": "ok@example.com"}, {"email": "not an email"}, {"email": "x@nodot"},
        {"email": "big@example.com", "properties": {"blob": "x" * 100_001}}, lists=(segment,)))
    assert bad.status == 400
    assert [e["source"]["pointer"] for e in bad.json()["errors"]] == [
        "/data/attributes/profiles/data/1/attributes/email",
        "/data/attributes/profiles/data/2/attributes/email",
        "/data/attributes/profiles/data/3",
    ]
    unknown_list = call(fake, "POST", "/api/profile-bulk-import-jobs", bulk_import({"email": "ok@example.com"},
                                                                                  lists=("GONE",)))
    assert unknown_list.status == 400 and unknown_list.json()["errors"][0]["source"] == {"pointer": "/data"}
    too_many = call(fake, "POST", "/api/profile-bulk-import-jobs",
                    bulk_import(*({"email": f"p{i}@example.com"} for i in range(10_001))))
    assert too_many.status == 400
    too_big = call(fake, "POST", "/api/profile-bulk-import-jobs",
                   bulk_import(*({"email": f"p{i}@example.com", "properties": {"n": "x" * 3000}} for i in range(1700))))
    assert too_big.status == 413 and "source" not in too_big.json()["errors"][0]
    fake.error_pointers = False
    unpointed = call(fake, "POST", "/api/profile-bulk-import-jobs", bulk_import({"email": "nope"}))
    assert unpointed.status == 400 and "source" not in unpointed.json()["errors"][0]
    assert fake.snapshot() == before
    assert fake.invalid == []  # well-formed requests, refused for their content


def test_list_relationship_changes_take_at_most_a_thousand_profiles(fake):
    segment = fake.create_list("S")
    answer = call(fake, "DELETE", f"/api/lists/{segment}/relationships/profiles",
                  relationship(*(f"01P{i}" for i in range(1001))))
    assert answer.status == 400
    assert fake.invalid == []


def test_calls_keep_their_bodies(fake):
    body = bulk_import({"email": "a@example.com"})
    call(fake, "POST", "/api/profile-bulk-import-jobs", body)
    call(fake, "GET", "/api/profiles")
    assert json.loads(fake.calls[0].body) == body
    assert fake.calls[1].body == b""
