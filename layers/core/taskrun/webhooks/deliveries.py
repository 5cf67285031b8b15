"""Webhook deliveries: one signed POST of an ended run to its `webhook_url`, tried again on a
bounded schedule until the receiver answers 2xx.

1. A run with a webhook URL ends. The notifier (on the runs table's stream) records its
   delivery, whose id is the message's `webhook-id` and is made from the run id, so a
   stream batch handled twice records one delivery; and it queues a message naming it.
2. The webhook function takes the message and leases the delivery (a conditional write: two
   copies of one message never send at once, and a copy that is not the delivery's own is
   dropped), POSTs the run (taskrun.webhooks.send.post: the host's addresses checked again, no
   redirects, bounded time) and records the attempt: time, status code or error, duration.
3. A 2xx ends the delivery `succeeded`. Otherwise the next attempt is due after the next
   delay of the schedule, with jitter; the message stays hidden in the queue until then.
   After the last delay the delivery is `failed`.
4. POST /v1/runs/{run_id}/deliveries/{delivery_id}/retry makes one more attempt now (the
   same `webhook-id`: a receiver that already has it can tell).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from aws_lambda_powertools import Logger
from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError
from pydantic import BaseModel, Field

from taskrun import aws
from taskrun.access.scopes import EVERY_TASK, TaskAccess
from taskrun.errors import DeliveryConflict, DeliveryNotFound
from taskrun.models import Run, UtcTime, format_time, utcnow
from taskrun.results.bucket import ResultStore, presented
from taskrun.runs.store import RunStore, visible
from taskrun.webhooks.send import DEFAULT_DELAYS, Answer, Signer, post

logger = Logger(child=True)

JITTER = 0.2  # each delay is drawn from ±20% of its nominal value
MAX_ATTEMPTS_KEPT = 100  # the newest; a delivery retried by hand again and again keeps a bounded record
MAX_REQUEUED = 1_000  # per sweep; the next sweep goes on
STALE_AFTER = timedelta(minutes=15)  # past its time, a pending delivery's message is taken as lost
LEASE_MARGIN_SECONDS = 60.0  # past the attempt's timeout, before another copy may take over
MAX_HIDDEN_SECONDS = 43_200  # SQS: the longest a received message can be hidden
DELIVERY_ID = re.compile(r"^msg_[0-9a-z]{26}$")


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Attempt(BaseModel):
    number: int = Field(description="1 for the first attempt, counting every attempt of the delivery.")
    at: UtcTime = Field(description="When the request was sent.")
    trigger: Literal["automatic", "manual"] = "automatic"
    status_code: int | None = Field(default=None, description="The receiver's HTTP status, if it answered.")
    error: str | None = Field(
        default=None, description="Why there was no answer: a refusal, a timeout, a failed connection."
    )
    duration_ms: int


class Delivery(BaseModel):
    """A run's webhook message, and every attempt to deliver it."""

    delivery_id: str = Field(description="The message's `webhook-id`, the same on every attempt.")
    run_id: str
    url: str
    event_type: str = Field(description="`run.<status>`, the `type` of the message.")
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: list[Attempt] = Field(default_factory=list)
    created_at: UtcTime
    next_attempt_at: UtcTime | None = Field(default=None, description="When a pending delivery is tried next.")
    delivered_at: UtcTime | None = None
    automatic_attempts: int = Field(default=0, exclude=True)
    manual: bool = Field(default=False, exclude=True)  # the next attempt was asked for by hand
    owner: str | None = Field(default=None, exclude=True)  # the queue message that carries it
    lease_until: datetime | None = Field(default=None, exclude=True)  # an attempt is under way until then


class DeliveryList(BaseModel):
    deliveries: list[Delivery]


@dataclass(frozen=True)
class DeliveryRef:
    """What a queue message names."""

    run_id: str
    delivery_id: str

    def to_json(self) -> str:
        return json.dumps({"run_id": self.run_id, "delivery_id": self.delivery_id})

    @classmethod
    def from_json(cls, text: str) -> DeliveryRef:
        data = json.loads(text)
        return cls(run_id=str(data["run_id"]), delivery_id=str(data["delivery_id"]))


def delivery_id_of(run_id: str) -> str:
    """A run's one delivery: its id follows from the run's (`run_x` → `msg_x`)."""
    return "msg_" + run_id.removeprefix("run_")


@dataclass(frozen=True)
class RetrySchedule:
    """The delays before the second, third, ... attempt; jittered so that receivers that come
    back are not met by every delivery at once."""

    delays: Sequence[float] = DEFAULT_DELAYS
    jitter: float = JITTER

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1

    def delay_after(self, attempts: int, rng: random.Random | None = None) -> float | None:
        """Seconds before the next attempt once `attempts` automatic ones were made; None when spent."""
        if attempts >= self.max_attempts:
            return None
        nominal = self.delays[attempts - 1]
        spread = nominal * self.jitter
        return max(0.0, nominal + (rng or random).uniform(-spread, spread))


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
        query: dict[str, Any] = {"KeyConditionExpression": Key("run_id").eq(run_id), "ConsistentRead": True}
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
        condition = Key("status").eq(DeliveryStatus.PENDING.value)
        if due_before is not None:
            condition = condition & Key("next_attempt_at").lt(format_time(due_before))
        query: dict[str, Any] = {"IndexName": "by_due", "KeyConditionExpression": condition}
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


class DeliveryQueue:
    """The queue the webhook function reads: one message per delivery to attempt."""

    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url

    def send(self, refs: Iterable[DeliveryRef]) -> None:
        batch = list(refs)
        sqs = aws.client("sqs")
        for start in range(0, len(batch), 10):
            entries = [
                {"Id": str(index), "MessageBody": ref.to_json()} for index, ref in enumerate(batch[start : start + 10])
            ]
            answer = sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            if answer.get("Failed"):
                raise RuntimeError(f"the webhook queue refused {len(answer['Failed'])} messages: {answer['Failed'][0]}")

    def hide(self, receipt_handle: str, seconds: float) -> None:
        """Keep a received message out of sight for `seconds` (then it is received again)."""
        aws.client("sqs").change_message_visibility(
            QueueUrl=self.queue_url,
            ReceiptHandle=receipt_handle,
            VisibilityTimeout=max(1, min(MAX_HIDDEN_SECONDS, round(seconds))),
        )


def message_of(run: Run, results: ResultStore | None = None) -> bytes:
    """The webhook's body: the ended run, as GET /v1/runs/{run_id} shows it (its secrets
    masked: the caller hands over the run as it is shown)."""
    payload = {
        "type": f"run.{run.status.value}",
        "timestamp": format_time(run.ended_at or utcnow()),
        "data": presented(run, results).model_dump(mode="json"),
    }
    return json.dumps(payload, separators=(",", ":")).encode()


class Deliveries:
    """Deliveries of ended runs to their webhooks."""

    def __init__(
        self,
        store: DeliveryStore,
        queue: DeliveryQueue,
        runs: RunStore,
        results: ResultStore | None = None,
        signer: Signer | None = None,
        schedule: RetrySchedule | None = None,
        timeout: float = 15.0,
        allow_private: bool = False,
        shown: Callable[[Run], Run] = lambda run: run,
    ) -> None:
        self.store = store
        self.queue = queue
        self.runs = runs
        self.results = results
        self.signer = signer
        self.schedule = schedule or RetrySchedule()
        self.timeout = timeout
        self.allow_private = allow_private
        self.shown = shown  # the run as the API shows it (secret arguments masked)

    def start(self, runs: Iterable[Run]) -> int:
        """Record and queue the delivery of each ended run with a webhook; return how many."""
        refs = []
        for run in runs:
            assert run.webhook_url is not None and run.status.is_done
            now = utcnow()
            delivery = Delivery(
                delivery_id=delivery_id_of(run.run_id),
                run_id=run.run_id,
                url=run.webhook_url,
                event_type=f"run.{run.status.value}",
                created_at=now,
                next_attempt_at=now,
            )
            if not self.store.create(delivery):
                known = self.store.find(DeliveryRef(run.run_id, delivery.delivery_id))
                if known is None or known.status is not DeliveryStatus.PENDING or known.attempts:
                    continue  # under way already: its own message carries it
            refs.append(DeliveryRef(run.run_id, delivery.delivery_id))
        self.queue.send(refs)
        return len(refs)

    def requeue(self, due_before: datetime | None = None) -> int:
        """Give pending deliveries a new message: those whose message was lost (due long ago
        and still pending: dead-lettered, or dropped by a local restart). Return how many."""
        refs = self.store.pending(due_before)
        for ref in refs:
            self.store.release(ref)
        self.queue.send(refs)
        if refs:
            logger.warning("webhook deliveries queued again", extra={"count": len(refs)})
        return len(refs)

    def of_run(self, run_id: str, access: TaskAccess = EVERY_TASK) -> list[Delivery]:
        visible(self.runs, run_id, access)  # an unknown run is not found, rather than an empty list
        return self.store.of_run(run_id)

    def retry(self, run_id: str, delivery_id: str, access: TaskAccess = EVERY_TASK) -> Delivery:
        """One more attempt now, asked for by hand."""
        visible(self.runs, run_id, access)
        ref = DeliveryRef(run_id, delivery_id)
        missing = DeliveryNotFound(f"run {run_id} has no delivery {delivery_id[:100]!r}")
        if not DELIVERY_ID.fullmatch(delivery_id):
            raise missing
        reopened = self.store.reopen(ref, utcnow())  # the condition checks it exists and is not under way
        if reopened is None:
            if self.store.find(ref) is None:
                raise missing
            raise DeliveryConflict(f"an attempt of delivery {delivery_id} is under way; ask again once it ends")
        self.queue.send([ref])
        return reopened

    def attempt(self, ref: DeliveryRef, carrier: str) -> float | None:
        """Take one message: attempt the delivery if it is due. Return the seconds until the
        message should come back, or None when it is done with (delivered, spent, or not
        this message's to carry)."""
        if self.signer is None:  # before the lease, which would hold the delivery for nothing
            raise RuntimeError("no webhook signing secret is configured (TASKRUN_WEBHOOK_SECRET or _ARN)")
        now = utcnow()
        delivery = self.store.lease(ref, carrier, now, now + timedelta(seconds=self.timeout + LEASE_MARGIN_SECONDS))
        if delivery is None:
            return self._come_back(self.store.find(ref), carrier, now)
        body = message_of(self.shown(self.runs.get(ref.run_id)), self.results)
        headers = self.signer.headers(delivery.delivery_id, body)
        sent_at = utcnow()
        answer = post(delivery.url, body, headers, self.timeout, self.allow_private)
        after = self._outcome(delivery, answer, sent_at)
        if not self.store.record(delivery, carrier):
            logger.warning("a delivery was taken over during an attempt", extra={"run_id": ref.run_id})
            return None
        log = logger.info if answer.accepted else logger.warning
        log(
            "webhook attempt",
            extra={
                "run_id": ref.run_id,
                "delivery_id": ref.delivery_id,
                "status_code": answer.status_code,
                "error": answer.error,
                "duration_ms": answer.duration_ms,
                "delivery_status": delivery.status,
            },
        )
        return after

    def _outcome(self, delivery: Delivery, answer: Answer, sent_at: datetime) -> float | None:
        """Add the attempt to the delivery and settle what comes next; the delay, if any."""
        manual = delivery.manual
        delivery.attempts = [
            *delivery.attempts,
            Attempt(
                number=(delivery.attempts[-1].number if delivery.attempts else 0) + 1,
                at=sent_at,
                trigger="manual" if manual else "automatic",
                status_code=answer.status_code,
                error=answer.error,
                duration_ms=answer.duration_ms,
            ),
        ][-MAX_ATTEMPTS_KEPT:]
        if not manual:
            delivery.automatic_attempts += 1
        delivery.manual = False
        if answer.accepted:
            delivery.status, delivery.next_attempt_at, delivery.delivered_at = DeliveryStatus.SUCCEEDED, None, utcnow()
            return None
        delay = self.schedule.delay_after(delivery.automatic_attempts)
        if delay is None:
            delivery.status, delivery.next_attempt_at = DeliveryStatus.FAILED, None
            return None
        delivery.status, delivery.next_attempt_at = DeliveryStatus.PENDING, utcnow() + timedelta(seconds=delay)
        return delay

    @staticmethod
    def _come_back(delivery: Delivery | None, carrier: str, now: datetime) -> float | None:
        if delivery is None or delivery.status is not DeliveryStatus.PENDING:
            return None
        if delivery.owner is not None and delivery.owner != carrier:
            return None  # a copy of a message, or one a retry by hand replaced
        due = max(moment for moment in (delivery.next_attempt_at, delivery.lease_until, now) if moment is not None)
        return max(1.0, (due - now).total_seconds())


def attempt_batch(records: list[dict[str, Any]], deliveries: Deliveries, seconds_left: float) -> dict[str, Any]:
    """Handle a batch of queue messages (attempts run side by side). A message that is to
    come back later is hidden until then and reported failed, so it stays in the queue."""
    from concurrent.futures import ThreadPoolExecutor

    def handle(record: dict[str, Any]) -> bool:
        """True when the message is done with (Lambda deletes it)."""
        if seconds_left < deliveries.timeout + 5:
            return False  # not enough time for an attempt: back after the queue's visibility timeout
        try:
            ref = DeliveryRef.from_json(record["body"])
            after = deliveries.attempt(ref, record["messageId"])
            if after is None:
                return True
            deliveries.queue.hide(record["receiptHandle"], after)
        except Exception:
            logger.exception("a webhook message failed", extra={"message_id": record.get("messageId")})
        return False

    with ThreadPoolExecutor(max_workers=max(1, min(10, len(records)))) as pool:
        done = list(pool.map(handle, records))
    failures = [record["messageId"] for record, ok in zip(records, done, strict=True) if not ok]
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in failures]}
