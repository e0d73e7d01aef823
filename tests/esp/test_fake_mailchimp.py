"""The fake Mailchimp itself (tools/segctl/espfakes/mailchimp.py): state, refusals, batches and injected faults."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest
from segctl.espfakes.mailchimp import DEFAULT_LIST, FakeMailchimp, subscriber_hash

LIST = DEFAULT_LIST


def call(fake: FakeMailchimp, method: str, path: str, body: object = None, *, key: str | None = None):
    """(status, JSON body or None, headers) of one request to the fake, with urllib."""
    data = None if body is None else json.dumps(body).encode()
    headers = {**fake.auth_header(key), "Content-Type": "application/json"}
    request = urllib.request.Request(fake.base_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw else None, response.headers
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else None, error.headers


def member_path(email: str, list_id: str = LIST) -> str:
    return f"/lists/{list_id}/members/{subscriber_hash(email)}"


def upsert(email: str, **fields: object) -> dict:
    return {"email_address": email, "status_if_new": "transactional", **fields}


@pytest.fixture
def fake():
    with FakeMailchimp(lists={LIST: ["FNAME", "SCORE"]}) as fake:
        yield fake


def test_subscriber_hash_is_md5_of_lower_cased_email():
    assert subscriber_hash("Urist.McVankab@freddiesjokes.com") == "62eeb292278cc15f5817cb78f7790b08"


def test_the_key_names_the_data_center():
    assert FakeMailchimp("f" * 32 + "-us6").dc == "us6"
    with pytest.raises(ValueError):
        FakeMailchimp("no-data-center")


def test_upsert_and_tags_change_state(fake):
    status, member, _ = call(
        fake, "PUT", member_path("Ann@Example.com"), upsert("Ann@Example.com", merge_fields={"SCORE": 7})
    )
    assert status == 200
    assert member["id"] == subscriber_hash("ann@example.com")
    assert member["status"] == "transactional"

    status, body, _ = call(
        fake,
        "POST",
        member_path("ann@example.com") + "/tags",
        {"tags": [{"name": "vip", "status": "active"}, {"name": "churned", "status": "active"}]},
    )
    assert (status, body) == (204, None)
    call(fake, "POST", member_path("ann@example.com") + "/tags", {"tags": [{"name": "churned", "status": "inactive"}]})

    assert fake.members(LIST) == {
        "Ann@Example.com": {"status": "transactional", "merge_fields": {"SCORE": 7}, "tags": {"vip"}}
    }
    assert fake.tag_members(LIST, "vip") == {"Ann@Example.com"}
    assert fake.tag_members(LIST, "churned") == set()

    status, got, _ = call(fake, "GET", member_path("ann@example.com"))
    assert status == 200
    assert got["merge_fields"] == {"FNAME": "", "SCORE": 7}
    assert [t["name"] for t in got["tags"]] == ["vip"]

    # a second upsert updates merge fields and does not touch the status
    call(fake, "PUT", member_path("ann@example.com"), upsert("ann@example.com", merge_fields={"FNAME": "Ann"}))
    assert fake.members(LIST)["Ann@Example.com"]["merge_fields"] == {"SCORE": 7, "FNAME": "Ann"}
    assert fake.invalid == []
    assert fake.calls[0] == ("PUT", "/3.0" + member_path("Ann@Example.com"))


def test_new_members_status_if_new_is_recorded(fake):
    fake.add_member(LIST, "old@example.com", status="subscribed")
    call(fake, "PUT", member_path("new@example.com"), upsert("new@example.com"))
    call(fake, "PUT", member_path("old@example.com"), upsert("old@example.com", status_if_new="subscribed"))
    assert fake.new_member_statuses(LIST) == {"new@example.com": "transactional"}
    assert fake.members(LIST)["old@example.com"]["status"] == "subscribed"
    # sending "subscribed" is recorded even though it created nothing
    assert fake.consent_violations() == [(LIST, "old@example.com", "status_if_new", "subscribed")]


def test_status_sent_to_an_existing_member_is_recorded(fake):
    fake.add_member(LIST, "u@example.com", status="unsubscribed")
    status, _, _ = call(fake, "PUT", member_path("u@example.com"), upsert("u@example.com", status="subscribed"))
    assert status == 200  # Mailchimp allows it
    assert fake.members(LIST)["u@example.com"]["status"] == "subscribed"
    assert (LIST, "u@example.com", "status", "subscribed") in fake.consent_violations()


def test_a_new_member_needs_status_if_new(fake):
    status, body, _ = call(fake, "PUT", member_path("x@example.com"), {"email_address": "x@example.com"})
    assert status == 400
    assert body["errors"][0]["field"] == "status_if_new"
    assert fake.members(LIST) == {}


def test_wrong_subscriber_hash_is_refused_and_recorded(fake):
    status, body, _ = call(fake, "PUT", member_path("someone@example.com"), upsert("other@example.com"))
    assert status == 400
    assert set(body) >= {"type", "title", "status", "detail", "instance"}
    assert body["status"] == 400
    assert fake.members(LIST) == {}
    assert [(r.method, r.status) for r in fake.invalid] == [("PUT", 400)]
    assert "does not match" in fake.invalid[0].reason


def test_unknown_merge_tag_is_refused(fake):
    status, body, _ = call(fake, "PUT", member_path("a@example.com"), upsert("a@example.com", merge_fields={"NOPE": 1}))
    assert status == 400
    assert body["errors"][0]["field"] == "NOPE"
    assert fake.members(LIST) == {}
    # once the merge field exists, it is accepted
    status, _, _ = call(fake, "POST", f"/lists/{LIST}/merge-fields", {"name": "Nope", "type": "number", "tag": "NOPE"})
    assert status == 200
    status, _, _ = call(fake, "PUT", member_path("a@example.com"), upsert("a@example.com", merge_fields={"NOPE": 1}))
    assert status == 200


def test_bad_auth_is_refused_and_recorded(fake):
    status, body, _ = call(fake, "GET", f"/lists/{LIST}/segments", key="0" * 32 + "-us21")
    assert status == 401
    assert body["title"] == "API Key Invalid"
    request = urllib.request.Request(fake.base_url + f"/lists/{LIST}/segments")  # no auth at all
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=5)
    assert raised.value.code == 401
    assert [r.status for r in fake.invalid] == [401, 401]


def test_unknown_list_is_404(fake):
    status, body, _ = call(fake, "PUT", member_path("a@example.com", "nosuchlist"), upsert("a@example.com"))
    assert status == 404
    assert body["title"] == "Resource Not Found"
    assert [(r.status, r.path) for r in fake.invalid] == [(404, "/3.0" + member_path("a@example.com", "nosuchlist"))]


def test_absent_member_lookup_is_404_but_not_a_refusal(fake):
    status, _, _ = call(fake, "GET", member_path("ghost@example.com"))
    assert status == 404
    assert fake.invalid == []


@pytest.mark.parametrize(
    "body",
    [
        {"tags": ["vip"]},
        {"tags": [{"name": "vip"}]},
        {"tags": [{"name": "vip", "status": "on"}]},
        {"tags": [{"name": "vip", "status": "active", "extra": 1}]},
        {"tags": {"name": "vip", "status": "active"}},
        {"tag": [{"name": "vip", "status": "active"}]},
    ],
)
def test_malformed_tag_body_is_refused_and_recorded(fake, body):
    fake.add_member(LIST, "a@example.com", status="transactional")
    status, _, _ = call(fake, "POST", member_path("a@example.com") + "/tags", body)
    assert status == 400
    assert fake.tags(LIST) == {}
    assert len(fake.invalid) == 1


def test_tagging_an_absent_member_is_404(fake):
    status, _, _ = call(
        fake, "POST", member_path("a@example.com") + "/tags", {"tags": [{"name": "x", "status": "active"}]}
    )
    assert status == 404
    assert fake.tags(LIST) == {}
    assert len(fake.invalid) == 1


def test_static_segments_are_tags(fake):
    for email in ("a@example.com", "b@example.com"):
        fake.add_member(LIST, email, status="transactional")
    status, seg, _ = call(fake, "POST", f"/lists/{LIST}/segments", {"name": "vip", "static_segment": []})
    assert status == 200
    status, again, _ = call(fake, "POST", f"/lists/{LIST}/segments", {"name": "vip", "static_segment": []})
    assert status == 400  # the name is taken

    status, got, _ = call(fake, "GET", f"/lists/{LIST}/segments?type=static")
    assert [(s["id"], s["name"], s["type"]) for s in got["segments"]] == [(seg["id"], "vip", "static")]

    status, result, _ = call(
        fake,
        "POST",
        f"/lists/{LIST}/segments/{seg['id']}",
        {"members_to_add": ["a@example.com", "b@example.com", "stranger@example.com"]},
    )
    assert status == 200
    assert result["total_added"] == 2
    assert result["errors"] == [
        {"email_addresses": ["stranger@example.com"], "error": "Email addresses are not in this audience."}
    ]
    call(fake, "POST", f"/lists/{LIST}/segments/{seg['id']}", {"members_to_remove": ["b@example.com"]})
    assert fake.tag_members(LIST, "vip") == {"a@example.com"}
    assert fake.members(LIST)["a@example.com"]["tags"] == {"vip"}


def test_segments_page_ten_by_default(fake):
    for i in range(12):
        fake.add_member(LIST, f"m{i}@example.com", status="transactional", tags=[f"t{i}"])
    _, page, _ = call(fake, "GET", f"/lists/{LIST}/segments?type=static")
    assert (len(page["segments"]), page["total_items"]) == (10, 12)
    _, rest, _ = call(fake, "GET", f"/lists/{LIST}/segments?type=static&count=10&offset=10")
    assert [s["name"] for s in rest["segments"]] == ["t10", "t11"]


def test_more_than_500_members_to_add_is_refused(fake):
    fake.add_member(LIST, "a@example.com", status="transactional", tags=["vip"])
    seg_id = fake.tags(LIST)["vip"]
    emails = [f"m{i}@example.com" for i in range(501)]
    status, body, _ = call(fake, "POST", f"/lists/{LIST}/segments/{seg_id}", {"members_to_add": emails})
    assert status == 400
    assert "500" in body["detail"]
    assert fake.tag_members(LIST, "vip") == {"a@example.com"}
    assert len(fake.invalid) == 1
    status, _, _ = call(fake, "POST", f"/lists/{LIST}/segments/{seg_id}", {"members_to_add": emails[:500]})
    assert status == 200


def test_a_batch_applies_its_operations_in_order(fake):
    email = "b@example.com"
    ops = [
        {"method": "PUT", "path": member_path(email), "body": json.dumps(upsert(email, merge_fields={"SCORE": 1}))},
        {
            "method": "POST",
            "path": member_path(email) + "/tags",
            "body": json.dumps({"tags": [{"name": "vip", "status": "active"}]}),
        },
        {"method": "PUT", "path": member_path(email), "body": json.dumps(upsert(email, merge_fields={"SCORE": 2}))},
        {
            "method": "PUT",
            "path": member_path("x@example.com"),
            "body": json.dumps(upsert("y@example.com")),
            "operation_id": "bad",
        },
    ]
    status, batch, _ = call(fake, "POST", "/batches", {"operations": ops})
    assert status == 200
    assert batch["status"] == "finished"
    assert (batch["total_operations"], batch["finished_operations"], batch["errored_operations"]) == (4, 4, 1)
    assert fake.members(LIST) == {email: {"status": "transactional", "merge_fields": {"SCORE": 2}, "tags": {"vip"}}}
    assert [r["status_code"] for r in fake.batch_results(batch["id"])] == [200, 204, 200, 400]
    assert [r.status for r in fake.invalid] == [400]

    status, again, _ = call(fake, "GET", f"/batches/{batch['id']}")
    assert (status, again["status"], again["id"]) == (200, "finished", batch["id"])


def test_a_batch_operation_body_is_a_json_string(fake):
    ops = [{"method": "PUT", "path": member_path("a@example.com"), "body": upsert("a@example.com")}]
    status, _, _ = call(fake, "POST", "/batches", {"operations": ops})
    assert status == 400
    assert fake.members(LIST) == {}


def test_injected_429_changes_nothing_and_carries_retry_after(fake):
    fake.fail_next(2, status=429, retry_after=3)
    for _ in range(2):
        status, body, headers = call(fake, "PUT", member_path("a@example.com"), upsert("a@example.com"))
        assert (status, body["status"], headers["Retry-After"]) == (429, 429, "3")
    assert fake.members(LIST) == {}
    assert fake.invalid == []  # faults are not the client's mistake
    status, _, _ = call(fake, "PUT", member_path("a@example.com"), upsert("a@example.com"))
    assert status == 200
    assert [r.status for r in fake.requests] == [429, 429, 200]


def test_peak_concurrency_is_recorded_and_the_limit_enforced():
    with FakeMailchimp(max_connections=2, latency=0.3) as fake:
        results: list[int] = []
        threads = [
            threading.Thread(target=lambda: results.append(call(fake, "GET", f"/lists/{LIST}/segments")[0]))
            for _ in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert fake.peak_concurrency >= 3
        assert sorted(results).count(200) >= 1
        assert 429 in results


def test_segment_members_page_and_leave_out_statuses_unless_asked(fake):
    for i, status in enumerate(("subscribed", "pending", "transactional", "unsubscribed", "cleaned") * 3):
        fake.add_member(LIST, f"m{i}@example.com", status=status, tags=["vip"])
    seg_id = fake.tags(LIST)["vip"]
    _, page, _ = call(fake, "GET", f"/lists/{LIST}/segments/{seg_id}/members")
    assert (len(page["members"]), page["total_items"]) == (6, 6)  # subscribed and pending only
    flags = "include_transactional=true&include_unsubscribed=true&include_cleaned=true"
    _, first, _ = call(fake, "GET", f"/lists/{LIST}/segments/{seg_id}/members?count=10&{flags}")
    _, rest, _ = call(fake, "GET", f"/lists/{LIST}/segments/{seg_id}/members?count=10&offset=10&{flags}")
    assert (len(first["members"]), len(rest["members"]), first["total_items"]) == (10, 5, 15)
    emails = {m["email_address"] for m in first["members"] + rest["members"]}
    assert emails == {f"m{i}@example.com" for i in range(15)}
    status, _, _ = call(fake, "GET", f"/lists/{LIST}/segments/{seg_id}/members?count=1001")
    assert status == 400
    assert fake.invalid[-1].status == 400


def test_an_asynchronous_batch_applies_nothing_until_processed_and_serves_its_results():
    import io
    import tarfile

    with FakeMailchimp(lists={LIST: ["FNAME"]}, batch_polls=2) as fake:
        ops = [
            {"method": "PUT", "path": member_path("a@example.com"), "body": json.dumps(upsert("a@example.com")),
             "operation_id": "0"},
            {"method": "PUT", "path": member_path("nope"), "body": json.dumps(upsert("nope")), "operation_id": "1"},
        ]
        _, batch, _ = call(fake, "POST", "/batches", {"operations": ops})
        assert (batch["status"], batch["response_body_url"]) == ("pending", "")
        _, polled, _ = call(fake, "GET", f"/batches/{batch['id']}")
        assert polled["status"] == "started"
        assert fake.members(LIST) == {}
        _, done, _ = call(fake, "GET", f"/batches/{batch['id']}")
        assert (done["status"], done["finished_operations"], done["errored_operations"]) == ("finished", 2, 1)
        assert set(fake.members(LIST)) == {"a@example.com"}

        # the results archive: no API key needed
        with urllib.request.urlopen(done["response_body_url"], timeout=5) as response:
            archive = response.read()
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            rows = [r for m in tar.getmembers() for r in json.load(tar.extractfile(m))]
        assert [(r["operation_id"], r["status_code"]) for r in rows] == [("0", 200), ("1", 400)]
        assert json.loads(rows[0]["response"])["status"] == "transactional"
        assert "looks fake or invalid" in json.loads(rows[1]["response"])["detail"]
        assert fake.invalid == []  # an address Mailchimp refuses is not a malformed request
