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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from taskrun import aws
from taskrun.access.scopes import EVERY_TASK, TaskAccess
from taskrun.errors import DeliveryConflict, DeliveryNotFound
from taskrun.models import Run, format_time, utcnow
from taskrun.results.bucket import ResultStore, presented
from taskrun.runs.store import RunStore, visible
from taskrun.webhooks.records import DELIVERY_ID, Attempt, Delivery, DeliveryRef, DeliveryStatus, delivery_id_of
from taskrun.webhooks.send import DEFAULT_DELAYS, Answer, Signer, post
from taskrun.webhooks.store import DeliveryStore

logger = Logger(child=True)

JITTER = 0.2  # each delay is drawn from ±20% of its nominal value
MAX_ATTEMPTS_KEPT = 100  # the newest; a delivery retried by hand again and again keeps a bounded record
STALE_AFTER = timedelta(minutes=15)  # past its time, a pending delivery's message is taken as lost
LEASE_MARGIN_SECONDS = 60.0  # past the attempt's timeout, before another copy may take over
MAX_HIDDEN_SECONDS = 43_200  # SQS: the longest a received message can be hidden


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
