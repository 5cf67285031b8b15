"""EventBridge rules, DynamoDB stream and SQS triggers of the template, stood in for locally.

moto executes state machines but sends no execution status changes, and keeps table
streams and queues but triggers nothing: here an execution's end is published to the
functions whose rule matches, and each stream and queue is read and handed in batches to
the functions it triggers, as Lambda's event source mappings do.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from taskrun import aws
from taskrun.flows.stepfunctions import ExecutionStatusChange
from taskrun.local.lambdas import LambdaRuntime, send_to_queue
from taskrun.local.resources import ACCOUNT_ID, EventRule, QueueSource, ScheduleSource, StreamSource
from taskrun.local.sandbox import FunctionError
from taskrun.local.ticker import Ticker

STREAM_POLL_SECONDS = 0.1  # at most ten reads a second of a shard, as Lambda's poller
STREAM_IDLE_SECONDS = 1.0  # with a signal of new records, how long a quiet poller sleeps
STREAM_RETRY_DELAY_SECONDS = 0.2
QUEUE_POLL_SECONDS = 0.1
QUEUE_BATCHES_IN_FLIGHT = 5  # Lambda starts with five pollers on a queue
QUEUE_WAIT_SECONDS = 5  # long polling, as Lambda's pollers do: a message is taken as it comes


def matches(pattern: Any, value: Any) -> bool:
    """EventBridge pattern matching: the parts taskrun's rules use (values, prefix, exists)."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        return all(_field_matches(rule, key in value, value.get(key)) for key, rule in pattern.items())
    return False


def _field_matches(rule: Any, present: bool, value: Any) -> bool:
    if isinstance(rule, dict):
        return present and matches(rule, value)
    for option in rule:
        if isinstance(option, dict):
            if "prefix" in option and isinstance(value, str) and value.startswith(option["prefix"]):
                return True
            if "exists" in option and option["exists"] == present:
                return True
        elif present and option == value:
            return True
    return False


class EventBus:
    def __init__(self, rules: list[EventRule], runtime: LambdaRuntime, region: str) -> None:
        self.rules = rules
        self.runtime = runtime
        self.region = region

    def publish(self, source: str, detail_type: str, detail: dict[str, Any], resources: list[str]) -> None:
        event = event_of(source, detail_type, detail, resources, self.region)
        for rule in self.rules:
            if matches(rule.pattern, event):
                self.runtime.invoke_async(rule.function, event)


def event_of(
    source: str, detail_type: str, detail: dict[str, Any], resources: list[str], region: str
) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT_ID,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": region,
        "resources": resources,
        "detail": detail,
    }


class Schedules:
    """The template's Schedule events: each function invoked asynchronously at its rate,
    with the "Scheduled Event" EventBridge sends."""

    def __init__(self, schedules: list[ScheduleSource], runtime: LambdaRuntime, region: str) -> None:
        self._tickers = [
            Ticker(schedule.seconds, self._firing(schedule, runtime, region), name=f"schedule-{schedule.rule}")
            for schedule in schedules
        ]

    @staticmethod
    def _firing(schedule: ScheduleSource, runtime: LambdaRuntime, region: str) -> Callable[[], None]:
        rule_arn = f"arn:aws:events:{region}:{ACCOUNT_ID}:rule/{schedule.rule}"

        def fire() -> None:
            runtime.invoke_async(schedule.function, event_of("aws.events", "Scheduled Event", {}, [rule_arn], region))

        return fire

    def start(self) -> None:
        for ticker in self._tickers:
            ticker.start()

    def stop(self) -> None:
        for ticker in self._tickers:
            ticker.stop()


def publish_execution_ends(bus: EventBus) -> Callable[[], None]:
    """Publish "Step Functions Execution Status Change" when an execution ends. Return the undo."""
    from moto.stepfunctions.parser.backend.execution import BaseExecutionWorkerCommunication

    original = BaseExecutionWorkerCommunication.terminated

    def terminated(self: BaseExecutionWorkerCommunication) -> None:
        original(self)
        described: dict[str, Any] = dict(self.execution.to_describe_output())
        detail = {**ExecutionStatusChange.of_execution(described).model_dump(), "input": described.get("input")}
        bus.publish("aws.states", "Step Functions Execution Status Change", detail, [described["executionArn"]])

    BaseExecutionWorkerCommunication.terminated = terminated  # type: ignore[method-assign]

    def undo() -> None:
        BaseExecutionWorkerCommunication.terminated = original  # type: ignore[method-assign]

    return undo


class StreamPoller:
    """Reads a table's stream from its end and hands each batch of records to the function,
    in order, as a Lambda event source mapping would."""

    def __init__(
        self, source: StreamSource, runtime: LambdaRuntime, region: str, records: threading.Event | None = None
    ) -> None:
        """`records`, if given, is set as the table's stream takes a record: the poller then
        reads the stream only when it has something new (and once in STREAM_IDLE_SECONDS)."""
        self.source = source
        self.runtime = runtime
        self.region = region
        name = f"stream-{source.function}"
        self._ticker = Ticker(STREAM_POLL_SECONDS, self._poll, name, wake=records, idle_seconds=STREAM_IDLE_SECONDS)

    def start(self) -> None:
        """Find the table's stream (its ARN over the API, as an event source mapping names
        it), then read its shards in this process, from moto's stream backend: a read over
        HTTP had botocore parse every record's images, and moto keep a new iterator for each
        read, for good (the most CPU the stack spent beside its tables in a burst of runs);
        a DynamoDB Streams client alone took ~0.1 s of every start (its endpoint rules). The
        records are the ones GetRecords answers, in the JSON it writes (times as epoch
        seconds, binary values in base64)."""
        from moto.dynamodbstreams.models import dynamodbstreams_backends

        dynamodb = aws.new_client("dynamodb", region_name=self.region)
        stream_arn = dynamodb.describe_table(TableName=self.source.table)["Table"]["LatestStreamArn"]
        backend = dynamodbstreams_backends[ACCOUNT_ID][self.region]
        self._shards = []
        for shard in backend.describe_stream(stream_arn)["Shards"]:
            iterator = backend.get_shard_iterator(stream_arn, shard["ShardId"], "LATEST")
            backend.shard_iterators.pop(iterator.arn, None)  # read here, never through the API
            self._shards.append(_ShardReader(shard["ShardId"], iterator.stream_shard, iterator.sequence_number))
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()

    def _poll(self) -> None:
        for shard in self._shards:
            records = shard.read(self.source.batch_size)
            if records:
                self._deliver(records, shard.shard_id)

    def _deliver(self, records: list[dict[str, Any]], shard_id: str = "") -> None:
        chosen = records
        if self.source.filters:
            chosen = [record for record in records if any(matches(pattern, record) for pattern in self.source.filters)]
        if not chosen:
            return
        event = {"Records": chosen}
        for attempt in range(self.source.max_retries + 1):
            try:
                self.runtime.invoke(self.source.function, event)
                return
            except FunctionError as error:
                print(f"{self.source.function} failed on a stream batch: {error}", flush=True)
            if attempt < self.source.max_retries:
                time.sleep(STREAM_RETRY_DELAY_SECONDS * (attempt + 1))
        if self.source.on_failure_queue:
            send_to_queue(self.source.on_failure_queue, self._failure_record(chosen, shard_id), self.region)

    def _failure_record(self, records: list[dict[str, Any]], shard_id: str) -> dict[str, Any]:
        """What an event source mapping sends its on-failure destination: where the batch
        lies in the stream, not the records themselves."""
        first, last = records[0], records[-1]
        return {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.source.function}",
                "condition": "RetryAttemptsExhausted",
                "approximateInvokeCount": self.source.max_retries + 1,
            },
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "version": "1.0",
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "DDBStreamBatchInfo": {
                "shardId": shard_id,
                "startSequenceNumber": first["dynamodb"].get("SequenceNumber"),
                "endSequenceNumber": last["dynamodb"].get("SequenceNumber"),
                "approximateArrivalOfFirstRecord": first["dynamodb"].get("ApproximateCreationDateTime"),
                "approximateArrivalOfLastRecord": last["dynamodb"].get("ApproximateCreationDateTime"),
                "batchSize": len(records),
                "streamArn": first.get("eventSourceARN", ""),
            },
        }


class _ShardReader:
    """Where a poller is in one shard of a table's stream (moto's), read in this process."""

    def __init__(self, shard_id: str, shard: Any, sequence_number: int) -> None:
        self.shard_id = shard_id
        self._shard = shard
        self._next = sequence_number

    def read(self, limit: int) -> list[dict[str, Any]]:
        """The next records, as Lambda delivers them (JSON: times as epoch seconds, binary
        values in base64, each with its eventSource)."""
        from moto.dynamodb.models.utilities import dynamo_json_dump

        records = self._shard.get(self._next, limit)
        self._next += len(records)
        return json.loads(dynamo_json_dump(records)) if records else []


class QueuePoller:
    """Receives a queue's messages and hands them to the function in batches, as Lambda's
    SQS event source mapping does: a batch the function handled is deleted, except the
    messages it reports failed (ReportBatchItemFailures); a failed invocation leaves the
    whole batch to come back after the queue's visibility timeout."""

    def __init__(self, source: QueueSource, runtime: LambdaRuntime, region: str) -> None:
        self.source = source
        self.runtime = runtime
        self.region = region
        self._in_flight = threading.Semaphore(QUEUE_BATCHES_IN_FLIGHT)
        self._ticker = Ticker(QUEUE_POLL_SECONDS, self._poll, name=f"queue-{source.function}")

    def start(self) -> None:
        self.sqs = aws.new_client("sqs", region_name=self.region)
        self.queue_url = self.sqs.get_queue_url(QueueName=self.source.queue)["QueueUrl"]
        self.queue_arn = f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{self.source.queue}"
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()

    def _poll(self) -> None:
        while self._in_flight.acquire(blocking=False):
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=min(10, self.source.batch_size),
                    MessageSystemAttributeNames=["All"],
                    MessageAttributeNames=["All"],
                    WaitTimeSeconds=QUEUE_WAIT_SECONDS,
                ).get("Messages", [])
            except Exception:
                self._in_flight.release()
                raise
            if not messages:
                self._in_flight.release()
                return
            threading.Thread(
                target=self._deliver, args=(messages,), name=f"queue-{self.source.function}", daemon=True
            ).start()

    def _deliver(self, messages: list[dict[str, Any]]) -> None:
        try:
            event = {"Records": [self._record(message) for message in messages]}
            try:
                answer = self.runtime.invoke(self.source.function, event)
            except FunctionError as error:
                print(f"{self.source.function} failed on a queue batch: {error}", flush=True)
                return
            failed: set[str] = set()
            if self.source.reports_failures and isinstance(answer, dict):
                failed = {str(item.get("itemIdentifier")) for item in answer.get("batchItemFailures") or []}
            done = [message for message in messages if message["MessageId"] not in failed]
            if done:
                self.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
                )
        finally:
            self._in_flight.release()

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": message.get("MessageAttributes", {}),
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.queue_arn,
            "awsRegion": self.region,
        }
