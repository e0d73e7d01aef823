"""A small JSON-over-HTTPS client for the ESP APIs, on urllib3 (which boto3 already brings).

Retries are urllib3's :class:`~urllib3.util.Retry`, configured for rate-limited APIs:

* 429 and 5xx (500, 502, 503, 504) are retried, for every method: the ESP sync only sends desired
  state, so a request sent twice does no harm;
* a ``Retry-After`` header is honoured as given, never shortened; but when it asks for a longer
  wait than ``max_wait`` (the sync must fit in its Lambda timeout), the client stops at once
  instead of sleeping through the invocation: the batch goes back to its queue, which delivers it
  again later;
* otherwise exponential backoff with jitter, at most ``backoff_max`` seconds per wait;
* connection errors and timeouts are retried the same way.

Whatever is still failing after ``attempts`` requests raises
:class:`~segmentation.service.ports.DestinationUnavailableError`; so does a 401/403 (a bad or
under-scoped key: retrying will not help, and nothing must be lost, so the batch waits in the queue
while someone fixes the key). Other 4xx answers are returned to the caller, who knows what they mean.

Never logs request bodies (they carry emails) or the key.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import urllib3
from urllib3 import BaseHTTPResponse
from urllib3.exceptions import HTTPError, MaxRetryError
from urllib3.util import Retry

from ...service.ports import DestinationUnavailableError

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Response:
    status: int
    data: Any  # the decoded JSON body, or None
    headers: Mapping[str, str]
    requests: int  # how many requests this took, retries included


class _Retry(Retry):
    """urllib3's Retry, refusing to wait longer than ``max_wait`` for a ``Retry-After``."""

    max_wait: float = 30.0

    def new(self, **kw: Any) -> _Retry:
        out = super().new(**kw)
        out.max_wait = self.max_wait
        return out

    def increment(self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None):
        if response is not None:
            wait = self.get_retry_after(response)
            if wait is not None and wait > self.max_wait:
                raise MaxRetryError(_pool, url, f"Retry-After {wait:g} s is longer than the {self.max_wait:g} s allowed")
        return super().increment(method, url, response, error, _pool, _stacktrace)


class JsonApi:
    """Requests to one API (``base_url``) with fixed headers (authentication, versions)."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        name: str,
        attempts: int = 6,
        backoff_factor: float = 0.5,
        backoff_max: float = 20.0,
        max_wait: float = 30.0,
        timeout: float = 15.0,
        pool_size: int = 10,
        content_type: str = "application/json",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.name = name
        self.headers = {"Accept": "application/json", "Content-Type": content_type,
                        "User-Agent": "segmentation-engine-esp-sync", **headers}
        retry = _Retry(
            total=attempts - 1,
            status_forcelist=RETRIED_STATUSES,
            allowed_methods=None,  # every method: desired state is safe to send twice
            backoff_factor=backoff_factor,
            backoff_max=backoff_max,
            backoff_jitter=backoff_factor,
            respect_retry_after_header=True,
            raise_on_status=False,
            redirect=0,
        )
        retry.max_wait = max_wait
        self.pool = urllib3.PoolManager(
            num_pools=2, maxsize=pool_size, block=True, retries=retry,
            timeout=urllib3.Timeout(connect=5.0, read=timeout),
        )

    def send(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str],
             where: str) -> tuple[BaseHTTPResponse, int]:
        """One request with the retries, as raw bytes; the answer and how many requests it took.
        Raises DestinationUnavailableError (naming ``where``) when no answer came at all."""
        try:
            raw = self.pool.request(method, url, body=body, headers=dict(headers))
        except MaxRetryError as e:
            raise DestinationUnavailableError(f"{where} failed after retries: {e.reason}") from None
        except HTTPError as e:
            raise DestinationUnavailableError(f"{where} failed: {type(e).__name__}") from None
        history = raw.retries.history if raw.retries is not None else ()
        return raw, len(history) + 1

    def request(self, method: str, path: str, *, body: Any = None,
                params: Mapping[str, str] | None = None) -> Response:
        url = self.base_url + path + (f"?{urlencode(params)}" if params else "")
        payload = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        raw, requests = self.send(method, url, payload, self.headers, f"{self.name}: {method} {path}")
        if raw.status in RETRIED_STATUSES:
            raise DestinationUnavailableError(
                f"{self.name}: {method} {path} still answered {raw.status} after {requests} requests")
        if raw.status in (401, 403):
            raise DestinationUnavailableError(
                f"{self.name}: {method} {path} answered {raw.status}: check the API key and its scopes "
                "(docs/destinations.md); the changes wait in the queue meanwhile")
        data = None
        if raw.data:
            try:
                data = json.loads(raw.data)
            except ValueError:
                data = None
        return Response(status=raw.status, data=data, headers=dict(raw.headers), requests=requests)
