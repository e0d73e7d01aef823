"""Where the dashboard's data comes from: the management API's JSON, read through a data source.

A data source answers ``get(path, params)`` with the route's JSON, or None when the route answers 404
(an unknown segment, or a route this deployment does not have yet). Two implementations:

* ``LocalSource``: the local runner's own routes over plain HTTP (``segctl local start-api``).
* ``RemoteSource``: a deployed stack's API over HTTPS, each request signed with SigV4 (service
  ``execute-api``) from the default AWS credential chain, as the IAM-protected management routes require.
"""

from __future__ import annotations

import json
import re
from typing import Protocol
from urllib.parse import quote, urlencode, urlsplit

import urllib3


class SourceError(Exception):
    """The API could not be read: unreachable, refused, or an answer that is not JSON."""


class DataSource(Protocol):
    def get(self, path: str, params: dict | None = None) -> dict | None:
        """The JSON of ``GET path?params``; None on 404. Raises SourceError otherwise."""


def segment_path(segment_id: str, tail: str = "") -> str:
    """/segments/<id><tail>, the id percent-encoded whole (a family instance holds a colon)."""
    return f"/segments/{quote(segment_id, safe='')}{tail}"


def _query(params: dict | None) -> str:
    return urlencode({k: v for k, v in (params or {}).items() if v not in (None, "")})


class _HttpSource:
    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = urllib3.PoolManager(timeout=urllib3.Timeout(total=timeout), retries=False)

    def _headers(self, url: str) -> dict:
        return {"accept": "application/json"}

    def get(self, path: str, params: dict | None = None) -> dict | None:
        query = _query(params)
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        try:
            resp = self.http.request("GET", url, headers=self._headers(url))
        except urllib3.exceptions.HTTPError as exc:
            raise SourceError(f"cannot reach {self.base_url} ({exc.__class__.__name__})") from None
        if resp.status == 404:
            return None
        if resp.status != 200:
            message = ""
            try:
                message = json.loads(resp.data).get("message") or ""
            except (ValueError, AttributeError):
                pass
            hint = " (check your AWS credentials and region)" if resp.status == 403 else ""
            raise SourceError(f"GET {path} answered {resp.status}{': ' + message if message else ''}{hint}")
        try:
            return json.loads(resp.data)
        except ValueError:
            raise SourceError(f"GET {path} did not answer JSON") from None


class LocalSource(_HttpSource):
    """The local runner's API (no authorization: it is not enforced locally)."""


#: execute-api hosts name their region: <api-id>.execute-api.<region>.amazonaws.com
_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class RemoteSource(_HttpSource):
    """A deployed stack's management API, every request signed with SigV4 for ``execute-api``.

    The credentials come from botocore's default chain (environment, profile, SSO, instance role...);
    the region from ``region``, else the API's host name, else the AWS configuration."""

    service = "execute-api"

    def __init__(self, base_url: str, region: str | None = None, session=None, timeout: float = 30.0) -> None:
        import botocore.session

        parts = urlsplit(base_url)
        if parts.scheme != "https" and parts.hostname not in _LOOPBACK:
            raise ValueError(f"{base_url}: give the API's https:// URL")
        if not parts.hostname:
            raise ValueError(f"{base_url}: not a URL")
        super().__init__(base_url, timeout)
        self.session = session or botocore.session.get_session()
        match = _REGION_IN_HOST.search(parts.hostname)
        self.region = region or (match.group(1) if match else None) or self.session.get_config_variable("region")
        if not self.region:
            raise ValueError("no AWS region: pass --region, or set AWS_REGION / a profile's region")
        self.credentials = self.session.get_credentials()
        if self.credentials is None:
            raise ValueError("no AWS credentials found (environment, ~/.aws, SSO or an instance role): "
                             "the management API is IAM-protected")

    def _headers(self, url: str) -> dict:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method="GET", url=url, headers={"accept": "application/json"})
        SigV4Auth(self.credentials.get_frozen_credentials(), self.service, self.region).add_auth(request)
        return dict(request.headers.items())
