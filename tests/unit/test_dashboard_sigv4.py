"""`segctl dashboard --url`: every API call is signed with SigV4 for execute-api, as IAM expects.

A local HTTP server records what arrives; the signature is recomputed by botocore's own signer from
the recorded request (method, path, query, host, date), on a fixed clock and fixed credentials, and
must be the one sent. No network."""

from __future__ import annotations

import datetime
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import botocore.auth
import botocore.session
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from segctl.dashboard.source import RemoteSource, SourceError
from support import answer_json

FIXED = datetime.datetime(2026, 11, 30, 12, 34, 56, tzinfo=datetime.UTC)
KEY, SECRET, TOKEN = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-example"


@pytest.fixture
def recorder():
    """A local API that records each request and answers with ``recorder.answer`` (status, JSON)."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            seen.append({"method": "GET", "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}})
            answer_json(self, *server.answer)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.answer = (200, {"segments": []})
    server.seen = seen
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def session(monkeypatch):
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: FIXED)
    s = botocore.session.Session()
    s.set_credentials(KEY, SECRET, TOKEN)
    return s


def expected_authorization(recorded: dict, region: str) -> str:
    """botocore's signature of the request as it arrived."""
    url = f"http://{recorded['headers']['host']}{recorded['path']}"
    request = AWSRequest(method=recorded["method"], url=url, headers={"accept": recorded["headers"]["accept"]})
    SigV4Auth(Credentials(KEY, SECRET, TOKEN), "execute-api", region).add_auth(request)
    return request.headers["Authorization"]


def test_each_call_carries_a_sigv4_signature_for_execute_api_in_the_region(recorder, session):
    source = RemoteSource(recorder.url, region="eu-west-1", session=session)
    assert source.get("/segments/metrics", {"from": "2026-11-01", "to": "2026-11-30", "empty": None}) == {"segments": []}
    (got,) = recorder.seen
    assert urlsplit(got["path"]).query == "from=2026-11-01&to=2026-11-30"
    auth = got["headers"]["authorization"]
    assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={KEY}/20261130/eu-west-1/execute-api/aws4_request, ")
    assert "SignedHeaders=" in auth and "host" in auth.split("SignedHeaders=")[1]
    assert got["headers"]["x-amz-date"] == "20261130T123456Z"
    assert got["headers"]["x-amz-security-token"] == TOKEN
    assert auth == expected_authorization(got, "eu-west-1")
    assert auth != expected_authorization(got, "us-east-1")


def test_a_segment_id_with_a_colon_is_signed_as_sent(recorder, session):
    from segctl.dashboard.source import segment_path

    RemoteSource(recorder.url, region="eu-west-1", session=session).get(segment_path("category-browsers:shoes"))
    (got,) = recorder.seen
    assert got["path"] == "/segments/category-browsers%3Ashoes"
    assert got["headers"]["authorization"] == expected_authorization(got, "eu-west-1")


def test_the_region_comes_from_the_api_host_name(session):
    source = RemoteSource("https://abc123.execute-api.ap-south-1.amazonaws.com", session=session)
    assert source.region == "ap-south-1"
    assert RemoteSource("https://abc123.execute-api.ap-south-1.amazonaws.com", region="eu-north-1",
                        session=session).region == "eu-north-1"


def test_a_refused_signature_says_to_check_the_credentials_and_a_404_is_none(recorder, session):
    source = RemoteSource(recorder.url, region="eu-west-1", session=session)
    recorder.answer = (403, {"message": "The security token included in the request is invalid."})
    with pytest.raises(SourceError, match="403: The security token .*check your AWS credentials"):
        source.get("/segments")
    recorder.answer = (404, {"message": "Not Found"})
    assert source.get("/experiments") is None


def test_plain_http_is_refused_except_on_this_machine(session):
    with pytest.raises(ValueError, match="https://"):
        RemoteSource("http://abc123.execute-api.eu-west-1.amazonaws.com", session=session)


def test_no_credentials_is_a_clear_error(monkeypatch):
    s = botocore.session.Session()
    monkeypatch.setattr(s, "get_credentials", lambda: None)
    with pytest.raises(ValueError, match="no AWS credentials"):
        RemoteSource("https://abc123.execute-api.eu-west-1.amazonaws.com", session=s)


def test_segctl_dashboard_with_a_bad_url_is_a_usage_error(capsys):
    from segctl.cli import main

    assert main(["dashboard", "--url", "http://example.com/api"]) == 2
    assert "give the API's https:// URL" in capsys.readouterr().err
