"""Delivery dedupe in IdempotencyTable: a conditional claim per delivery, completed or released.

``once(key, action)`` claims ``key`` (status ``INPROGRESS``) before ``action`` runs, stores the
result (``COMPLETED``, kept for the TTL) after it, and removes the claim if ``action`` raises, so
the provider's retry is processed rather than dropped. A delivery completed before answers its
stored result without running ``action``; one claimed by another invocation right now raises
``DeliveryInProgressError`` (the webhook answers 409 and the provider retries).

Each call writes its claim with a token of its own. DynamoDB may apply a write and lose the answer
(a 500 or a timeout after the write): botocore then retries the put, whose condition fails on the
claim that very put stored. The returned old item (``ReturnValuesOnConditionCheckFailure``) carries
our token, so the call knows the claim is its own and proceeds, instead of reporting its own
delivery as "in progress" until the claim expires. When the claim write fails outright, the claim
it may nevertheless have stored is deleted (best effort, only if it still holds our token), so the
provider's retry of the 503 is not blocked either. A claim left behind by a crash expires with the
invocation (``in_progress_expiration``, the Lambda's remaining time).

This used to be Powertools' ``idempotent_function``. Recognising our own claim needs a per-attempt
token in the item and a look at it when the put's condition fails, plus a conditional delete on
every failure path; with Powertools that means overriding three private methods of its DynamoDB
persistence layer (``_put_record``, ``_update_record``, ``_delete_record``) and keeping the token
in per-request state on a shared object, which breaks silently when Powertools changes them. So it
is these few boto3 calls instead. The records keep Powertools' layout and key (the same ``id``
hash, ``status``, ``expiration`` as TTL attribute, ``in_progress_expiration`` in ms, ``data``), so
deliveries remembered before an upgrade are still duplicates after it, and back.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from ..service.ports import DeliveryInProgressError

__all__ = ["DeliveryInProgressError", "Deduplicator"]

logger = Logger(child=True)

#: IdempotencyTable's TimeToLiveSpecification.AttributeName in template.yaml (epoch seconds)
TTL_ATTRIBUTE = "expiration"
IN_PROGRESS_EXPIRY = "in_progress_expiration"  # epoch milliseconds
TOKEN = "claim_token"
IN_PROGRESS, COMPLETED = "INPROGRESS", "COMPLETED"
#: how long a claim holds when no Lambda context tells the invocation's remaining time
DEFAULT_IN_PROGRESS_MS = 60_000
#: the scope Powertools' idempotent_function gave the keys (function name + the wrapped function)
_LEGACY_SCOPE = "segmentation.infra.idempotency.Deduplicator.__init__.<locals>.guarded"


class Deduplicator:
    def __init__(self, table_name: str, ttl_seconds: int, client: Any | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        if client is None:
            import boto3

            client = boto3.client("dynamodb")
        self.client = client
        self.table = table_name
        self.ttl_seconds = ttl_seconds
        self.clock = clock
        self._context: Any = None

    def register_lambda_context(self, context: Any) -> None:
        """Lets an IN_PROGRESS claim expire with the invocation if the function times out."""
        self._context = context

    def record_id(self, key: str) -> str:
        """The item's ``id``: what Powertools' idempotency computed for the same key."""
        function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "test-func")
        return f"{function}.{_LEGACY_SCOPE}#{hashlib.md5(json.dumps(key).encode()).hexdigest()}"

    def once(self, key: str, action: Callable[[], dict]) -> dict:
        """Run ``action`` unless ``key`` was already completed; return its (stored) result."""
        if not key:
            raise ValueError("a delivery needs a dedupe key")
        item_key = {"id": {"S": self.record_id(key)}}
        token = uuid.uuid4().hex
        stored = self._claim(item_key, token)
        if stored is not None:
            return stored
        try:
            result = action()
        except BaseException:
            self._release(item_key, token)
            raise
        self._complete(item_key, token, result)
        return result

    # -- the three writes ---------------------------------------------------------------------

    def _claim(self, item_key: dict, token: str) -> dict | None:
        """Claim the key for this call: None when claimed (run the action), else the stored result."""
        for _ in range(3):
            now = self.clock()
            remaining = self._remaining_ms()
            try:
                self.client.put_item(
                    TableName=self.table,
                    Item={**item_key, "status": {"S": IN_PROGRESS}, TOKEN: {"S": token},
                          TTL_ATTRIBUTE: {"N": str(int(now) + self.ttl_seconds)},
                          IN_PROGRESS_EXPIRY: {"N": str(int(now * 1000) + remaining)}},
                    # free, expired (TTL deletion lags), or an abandoned claim whose invocation is over
                    ConditionExpression="attribute_not_exists(#id) OR #exp < :now OR "
                                        "(#status = :inprogress AND #ipx < :now_ms)",
                    ExpressionAttributeNames={"#id": "id", "#exp": TTL_ATTRIBUTE, "#status": "status",
                                              "#ipx": IN_PROGRESS_EXPIRY},
                    ExpressionAttributeValues={":now": {"N": str(int(now))}, ":now_ms": {"N": str(int(now * 1000))},
                                               ":inprogress": {"S": IN_PROGRESS}},
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
                return None
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    self._release(item_key, token)  # the put may have been stored before it failed
                    raise
                existing = exc.response.get("Item") or self._read(item_key)
            except BotoCoreError:  # a timeout or a dropped connection: the claim may be stored
                self._release(item_key, token)
                raise
            if existing is None:
                continue  # released or expired in between: claim again
            if existing.get(TOKEN, {}).get("S") == token:
                # A retried put that found the claim its own first attempt stored (answer lost).
                if existing.get("status", {}).get("S") == IN_PROGRESS:
                    return None
            if existing.get("status", {}).get("S") == COMPLETED:
                data = existing.get("data", {}).get("S")
                return json.loads(data) if data else {}
            raise DeliveryInProgressError(item_key["id"]["S"])
        raise DeliveryInProgressError(item_key["id"]["S"])

    def _complete(self, item_key: dict, token: str, result: dict) -> None:
        """Record the result for later duplicates. The action has run (its events are published): if
        this write fails, the answer is still the action's result, since a 503 would make the
        provider send the delivery again; the claim then expires with the invocation."""
        try:
            self.client.update_item(
                TableName=self.table, Key=item_key,
                UpdateExpression="SET #status = :done, #data = :data, #exp = :exp REMOVE #ipx",
                ConditionExpression="#token = :token",
                ExpressionAttributeNames={"#status": "status", "#data": "data", "#exp": TTL_ATTRIBUTE,
                                          "#ipx": IN_PROGRESS_EXPIRY, "#token": TOKEN},
                ExpressionAttributeValues={":done": {"S": COMPLETED},
                                           ":data": {"S": json.dumps(result, sort_keys=True)},
                                           ":exp": {"N": str(int(self.clock()) + self.ttl_seconds)},
                                           ":token": {"S": token}},
            )
        except (ClientError, BotoCoreError) as exc:
            # ConditionalCheckFailed: our claim expired and another invocation holds the key now.
            logger.warning("dedupe: could not record a processed delivery (%s)", _code(exc) or type(exc).__name__)

    def _release(self, item_key: dict, token: str) -> None:
        """Delete our claim, if it is stored and still ours. Best effort: the caller is failing already."""
        try:
            self.client.delete_item(
                TableName=self.table, Key=item_key, ConditionExpression="#token = :token",
                ExpressionAttributeNames={"#token": TOKEN}, ExpressionAttributeValues={":token": {"S": token}})
        except (ClientError, BotoCoreError) as exc:
            if _code(exc) != "ConditionalCheckFailedException":  # not stored, or not ours: nothing to do
                logger.warning("dedupe: could not release a claim (%s); it expires with the invocation",
                               _code(exc) or type(exc).__name__)

    def _read(self, item_key: dict) -> dict | None:
        return self.client.get_item(TableName=self.table, Key=item_key, ConsistentRead=True).get("Item")

    def _remaining_ms(self) -> int:
        context = self._context
        if context is not None:
            try:
                return max(int(context.get_remaining_time_in_millis()), 0)
            except Exception:  # a context without a clock: fall back
                pass
        return DEFAULT_IN_PROGRESS_MS


def _code(exc: Exception) -> str | None:
    return exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else None
