"""S3 as the :class:`~segmentation.service.ports.ObjectStore` of the history import."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from typing import Any


class S3ObjectStore:
    def __init__(self, client: Any, bucket: str) -> None:
        self.client = client
        self.bucket = bucket

    def lines(self, key: str) -> Iterator[str]:
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="replace")
        pending = ""
        for chunk in body.iter_chunks(1 << 20):
            pending += decoder.decode(chunk)
            *complete, pending = pending.split("\n")
            for line in complete:
                yield line + "\n"
        pending += decoder.decode(b"", final=True)
        if pending:
            yield pending

    def put(self, key: str, body: bytes, content_type: str = "application/json") -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)

    def keys(self, prefix: str) -> list[str]:
        out: list[str] = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)

    def metadata(self, key: str) -> dict[str, str]:
        head = self.client.head_object(Bucket=self.bucket, Key=key)
        return {**{k.lower(): v for k, v in head.get("Metadata", {}).items()}, "etag": head.get("ETag", "").strip('"')}
