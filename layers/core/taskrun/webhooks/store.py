"""The deliveries table: a run's delivery recorded once, leased for an attempt, its attempts
kept, and the pending ones whose message went missing found again."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from taskrun import aws
from taskrun.models import format_time
from taskrun.webhooks.records import Delivery, DeliveryRef, DeliveryStatus

MAX_REQUEUED = 1_000  # per sweep; the next sweep goes on


class DeliveryStore(aws.TableAdapter):
    """DeliveriesTable: key (`run_id`, `delivery_id`)."""

    def create(self, delivery: Delivery) -> bool:
        """Record a new delivery; False if it was recorded before (the stream sent it again)."""
        try:
            self.table.put_item(Item=_to_item(delivery), ConditionExpression="attribute_not_exists(delivery_id)")
        except ClientError as error:
            if aws.is_condition_failure(error):
                return False
            raise
        return True

    def find(self, ref: DeliveryRef) -> Delivery | None:
        item = self.table.get_item(Key={"run_id": ref.run_id, "delivery_id": ref.delivery_id}, ConsistentRead=True).get(
            "Item"
        )
        return _from_item(item) if item else None

    def of_run(self, run_id: str) -> list[Delivery]:
        query: dict[str, Any] = {
            "KeyConditionExpression": "run_id = :run_id",
            "ExpressionAttributeValues": {":run_id": run_id},
            "ConsistentRead": True,
        }
        found: list[Delivery] = []
        while True:
            page = self.table.query(**query)
            found.extend(_from_item(item) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return found
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def lease(self, ref: DeliveryRef, owner: str, now: datetime, until: datetime) -> Delivery | None:
        """Take the delivery for one attempt: it is pending, due, not under way, and this
        message's (or no message's yet). None if not."""
        return self._update_if(
            ref,
            UpdateExpression="SET #owner = :me, lease_until = :until",
            ConditionExpression=(
                "#status = :pending AND (attribute_not_exists(#owner) OR #owner = :me)"
                " AND (attribute_not_exists(lease_until) OR lease_until < :now)"
                " AND (attribute_not_exists(next_attempt_at) OR next_attempt_at <= :now)"
            ),
            ExpressionAttributeNames={"#status": "status", "#owner": "owner"},
            ExpressionAttributeValues={
                ":me": owner,
                ":until": format_time(until),
                ":now": format_time(now),
                ":pending": DeliveryStatus.PENDING.value,
            },
        )

    def record(self, delivery: Delivery, owner: str) -> bool:
        """Write the outcome of the attempt this owner made under its lease; False if the
        delivery was taken from it meanwhile (the attempt is then not kept)."""
        item = _to_item(delivery)
        names = {"#status": "status", "#owner": "owner"}
        sets = ["attempts = :attempts", "#status = :status", "automatic_attempts = :automatic", "manual = :no"]
        values: dict[str, Any] = {
            ":attempts": item["attempts"],
            ":status": item["status"],
            ":automatic": item["automatic_attempts"],
            ":no": False,
            ":me": owner,
        }
        removes = ["lease_until"]
        for name in ("next_attempt_at", "delivered_at"):
            if name in item:
                sets.append(f"{name} = :{name}")
                values[f":{name}"] = item[name]
            else:
                removes.append(name)
        return self.update_if(
            Key={"run_id": delivery.run_id, "delivery_id": delivery.delivery_id},
            UpdateExpression=f"SET {', '.join(sets)} REMOVE {', '.join(removes)}",
            ConditionExpression="#owner = :me",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def reopen(self, ref: DeliveryRef, now: datetime) -> Delivery | None:
        """Make a delivery due now for one attempt asked for by hand, for the next message to
        carry; None if an attempt is under way."""
        return self._update_if(
            ref,
            UpdateExpression="SET #status = :pending, next_attempt_at = :now, manual = :yes REMOVE #owner",
            ConditionExpression=(
                "attribute_exists(delivery_id) AND (attribute_not_exists(lease_until) OR lease_until < :now)"
            ),
            ExpressionAttributeNames={"#status": "status", "#owner": "owner"},
            ExpressionAttributeValues={
                ":pending": DeliveryStatus.PENDING.value,
                ":now": format_time(now),
                ":yes": True,
            },
        )

    def _update_if(self, ref: DeliveryRef, **update: Any) -> Delivery | None:
        """A conditional update: the delivery as it now stands, or None if the condition was false."""
        try:
            answer = self.table.update_item(
                Key={"run_id": ref.run_id, "delivery_id": ref.delivery_id}, ReturnValues="ALL_NEW", **update
            )
        except ClientError as error:
            if aws.is_condition_failure(error):
                return None
            raise
        return _from_item(answer["Attributes"])

    def pending(self, due_before: datetime | None = None) -> list[DeliveryRef]:
        """Pending deliveries (index `by_due`: status, next_attempt_at), those due before a
        time if one is given, oldest first."""
        condition, values = "#status = :pending", {":pending": DeliveryStatus.PENDING.value}
        if due_before is not None:
            condition, values[":due"] = condition + " AND next_attempt_at < :due", format_time(due_before)
        query: dict[str, Any] = {
            "IndexName": "by_due",
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": values,
        }
        found: list[DeliveryRef] = []
        while True:
            page = self.table.query(**query)
            found += [DeliveryRef(item["run_id"], item["delivery_id"]) for item in page["Items"]]
            if "LastEvaluatedKey" not in page or len(found) >= MAX_REQUEUED:
                return found[:MAX_REQUEUED]
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def release(self, ref: DeliveryRef) -> None:
        """Let the next message take a pending delivery (its own message was lost)."""
        self.table.update_item(
            Key={"run_id": ref.run_id, "delivery_id": ref.delivery_id},
            UpdateExpression="REMOVE #owner, lease_until",
            ExpressionAttributeNames={"#owner": "owner"},
        )


def _to_item(delivery: Delivery) -> dict[str, Any]:
    item = delivery.model_dump(mode="json", exclude_none=True)
    item["automatic_attempts"] = delivery.automatic_attempts
    item["manual"] = delivery.manual
    if delivery.owner is not None:
        item["owner"] = delivery.owner
    if delivery.lease_until is not None:
        item["lease_until"] = format_time(delivery.lease_until)
    return item


def _from_item(item: dict[str, Any]) -> Delivery:
    return Delivery.model_validate(item)
