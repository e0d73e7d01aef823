"""The deliveries accepted, in DynamoDB: a :class:`~segmentation.service.ports.DeliveryLog`.

Item: ``delivery`` (partition key: the service hands in a SHA-256 hex digest, never the delivery
key itself), ``expires`` (epoch seconds; DynamoDB's TTL deletes the item some time after it, and until then
an expired item counts as absent). One
conditional ``PutItem`` per delivery (1 WCU: the item is far below 1 KB), no read.
"""

from __future__ import annotations

from typing import Any


class DynamoDBDeliveryLog:
    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def remember(self, delivery: str, now: int, expires: int) -> bool:
        try:
            self.client.put_item(
                TableName=self.table,
                Item={"delivery": {"S": delivery}, "expires": {"N": str(expires)}},
                # an item past its expiry may linger until TTL deletes it (hours, even days): it no
                # longer counts, and is replaced
                ConditionExpression="attribute_not_exists(delivery) OR expires <= :now",
                ExpressionAttributeValues={":now": {"N": str(now)}},
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True
