"""The run store: a small port, and its DynamoDB adapter.

Table design (template.yaml, RunsTable): key `run_id`; run ids are time-ordered, so they
double as the sort key of four indexes, each read newest first: `by_schedule` (the
runs a schedule started; sparse), `by_task` (task_id),
`by_status` (status) and `by_time` (`kind`, one of a few shards, so that no single index
partition takes every write). The indexes project what a list shows (a run's summary),
never the arguments, result or task token. Arbitrary JSON (arguments, result, error,
usage) is kept as JSON text, so numbers keep their exact form and no Decimal leaks out.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from taskrun import aws, cursors
from taskrun.errors import RunConflict, RunNotFound
from taskrun.ids import RUN_ID_PATTERN
from taskrun.models import ACTIVE_STATUSES, Run, RunError, RunStatus, RunSummary, TriggeredBy, format_time

JSON_FIELDS = ("arguments", "result", "error", "usage", "json_schema")
RUN_ID = re.compile(RUN_ID_PATTERN)
KIND = "run"
TIME_SHARDS = 4  # `by_time` partitions: each takes a quarter of the writes
SHARD_KEYS = [f"{KIND}#{shard}" for shard in range(TIME_SHARDS)]
MAX_READS_PER_LIST = 8  # queries one list request may make; past them it answers with what it has and a cursor
FILTERED_READ_SIZE = 100  # items a filtered query evaluates at a time


@dataclass(frozen=True)
class RunFilter:
    schedule_id: str | None = None
    task_id: str | None = None
    status: RunStatus | None = None
    triggered_by: TriggeredBy | None = None


@dataclass(frozen=True)
class Ending:
    """How a run ends: the status and what goes with it."""

    status: RunStatus
    ended_at: datetime
    result: Any = None
    error: RunError | None = None
    usage: dict[str, float] | None = None
    started_at: datetime | None = None
    result_key: str | None = None  # the result, kept in the results bucket instead of the record

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None:
            return None
        return max(0, int((self.ended_at - self.started_at).total_seconds() * 1000))


class RunStore(Protocol):
    def create(self, run: Run) -> None: ...

    def get(self, run_id: str) -> Run: ...

    def list(self, filters: RunFilter, limit: int, cursor: str | None) -> tuple[list[RunSummary], str | None]: ...

    def mark_running(self, run_id: str, started_at: datetime, execution_arn: str | None = None) -> Run: ...

    def finish(self, run_id: str, ending: Ending) -> Run: ...


class DynamoRunStore(aws.TableAdapter):
    def create(self, run: Run) -> None:
        try:
            self.table.put_item(Item=_to_item(run), ConditionExpression="attribute_not_exists(run_id)")
        except ClientError as error:
            if aws.is_condition_failure(error):
                raise RunConflict(run.run_id, run.status, f"run {run.run_id} exists already") from error
            raise

    def get(self, run_id: str) -> Run:
        _known_shape(run_id)
        item = self.table.get_item(Key={"run_id": run_id}, ConsistentRead=True).get("Item")
        if item is None:
            raise RunNotFound(run_id)
        return run_from_item(item)

    def list(self, filters: RunFilter, limit: int, cursor: str | None) -> tuple[list[RunSummary], str | None]:
        """Runs matching the filters, newest first, read from the most selective index.

        The index's partitions (one, or the time shards) are read side by side and merged
        by run id. A request makes at most MAX_READS_PER_LIST queries: a filter that matches
        little answers a short (even empty) page with a cursor rather than reading on."""
        index, key_name, key_value = _index_for(filters)
        partitions = SHARD_KEYS if index == "by_time" else [key_value]
        before = cursors.decode(cursor, key_name, key_value, RUN_ID) if cursor else None
        filter_names: dict[str, str] = {}
        filter_values: dict[str, str] = {}
        conditions = []
        for name, value in (
            ("task_id", filters.task_id),
            ("status", filters.status),
            ("triggered_by", filters.triggered_by),
        ):
            if value is not None and name != key_name:
                filter_names[f"#{name}"] = name
                filter_values[f":{name}"] = str(value)
                conditions.append(f"#{name} = :{name}")
        page_size = FILTERED_READ_SIZE if conditions else limit

        def query(partition: str, start: dict[str, Any] | None) -> dict[str, Any]:
            request: dict[str, Any] = {
                "IndexName": index,
                "KeyConditionExpression": "#k = :k" + (" AND #run_id < :before" if before else ""),
                "ExpressionAttributeNames": {"#k": key_name, **filter_names},
                "ExpressionAttributeValues": {":k": partition, **filter_values},
                "ScanIndexForward": False,
                "Limit": page_size,
            }
            if before:
                request["ExpressionAttributeNames"]["#run_id"] = "run_id"
                request["ExpressionAttributeValues"][":before"] = before
            if conditions:
                request["FilterExpression"] = " AND ".join(conditions)
            if start is not None:
                request["ExclusiveStartKey"] = start
            return dict(self.table.query(**request))

        found: list[dict[str, Any]] = []
        resume: dict[str, dict[str, Any] | None] = dict.fromkeys(partitions)  # absent: read to its end
        reads = 0
        while True:
            for partition in list(resume):
                page = query(partition, resume[partition])
                reads += 1
                found += page.get("Items", [])
                if "LastEvaluatedKey" in page:
                    resume[partition] = page["LastEvaluatedKey"]
                else:
                    del resume[partition]
            # every partition still being read has been read down to its resume key: what is
            # newer than the highest of those is complete and in order
            bound = max((key["run_id"] for key in resume.values() if key), default="")
            ready = sorted((item for item in found if item["run_id"] >= bound), key=_run_id, reverse=True)
            if len(ready) >= limit:
                chosen = ready[:limit]
                return [summary_from_item(item) for item in chosen], cursors.encode(
                    chosen[-1]["run_id"], key_name, key_value
                )
            if not resume:
                return [summary_from_item(item) for item in ready], None
            if reads + len(resume) > MAX_READS_PER_LIST:
                # answer what is complete; the next request goes on below the bound
                return [summary_from_item(item) for item in ready], cursors.encode(bound, key_name, key_value)

    def mark_running(self, run_id: str, started_at: datetime, execution_arn: str | None = None) -> Run:
        values = {"status": RunStatus.RUNNING.value, "started_at": format_time(started_at)}
        if execution_arn is not None:
            values["execution_arn"] = execution_arn
        return self._move(run_id, allowed_from=(RunStatus.PENDING,), values=values)

    def finish(self, run_id: str, ending: Ending) -> Run:
        values: dict[str, Any] = {"status": ending.status.value, "ended_at": format_time(ending.ended_at)}
        if ending.result is not None:
            values["result"] = json.dumps(ending.result)
        if ending.result_key is not None:
            values["result_key"] = ending.result_key
        if ending.error is not None:
            values["error"] = ending.error.model_dump_json()
        if ending.usage:
            values["usage"] = json.dumps(ending.usage)
        if ending.duration_ms is not None:
            values["duration_ms"] = ending.duration_ms
        # a run that ends straight from pending (a flow whose start was not recorded) gets its start too
        unless_set = {"started_at": format_time(ending.started_at)} if ending.started_at else {}
        return self._move(run_id, allowed_from=ACTIVE_STATUSES, values=values, unless_set=unless_set)

    def _move(
        self,
        run_id: str,
        allowed_from: tuple[RunStatus, ...],
        values: dict[str, Any],
        unless_set: dict[str, Any] | None = None,
    ) -> Run:
        """One conditional write: the move happens only from an allowed status, so one writer wins.
        `unless_set` values are written only where the run has none yet."""
        _known_shape(run_id)
        unless_set = unless_set or {}
        names = {f"#{name}": name for name in (*values, *unless_set)}
        names["#status"] = "status"
        expression_values = {f":{name}": value for name, value in (*values.items(), *unless_set.items())}
        allowed = {f":from{i}": status.value for i, status in enumerate(allowed_from)}
        assignments = [f"#{name} = :{name}" for name in values]
        assignments += [f"#{name} = if_not_exists(#{name}, :{name})" for name in unless_set]
        try:
            response = self.table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="SET " + ", ".join(assignments),
                ConditionExpression=f"attribute_exists(run_id) AND #status IN ({', '.join(allowed)})",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={**expression_values, **allowed},
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not aws.is_condition_failure(error):
                raise
            old = error.response.get("Item")
            if not old:
                raise RunNotFound(run_id) from error
            status = TypeDeserializer().deserialize(old["status"])  # this answer comes in the wire format
            raise RunConflict(run_id, status, f"run {run_id} is {status} already") from error
        return run_from_item(response["Attributes"])


def _known_shape(run_id: str) -> None:
    """An id no run can have is not found, without asking DynamoDB (which refuses keys over 2 KB)."""
    if not RUN_ID.fullmatch(run_id):
        raise RunNotFound(run_id[:100])


def end_once(store: RunStore, run_id: str, ending: Ending) -> tuple[Run, bool]:
    """End a run unless another writer ended it first (a repeated delivery, a cancel);
    return the run as it now stands and whether this call ended it."""
    try:
        return store.finish(run_id, ending), True
    except RunConflict:
        return store.get(run_id), False


def _index_for(filters: RunFilter) -> tuple[str, str, str]:
    if filters.schedule_id is not None:
        return "by_schedule", "schedule_id", filters.schedule_id
    if filters.task_id is not None:
        return "by_task", "task_id", filters.task_id
    if filters.status is not None:
        return "by_status", "status", filters.status.value
    return "by_time", "kind", KIND


def time_shard(run_id: str) -> str:
    """The `by_time` partition of a run: spread evenly, fixed for the run's life."""
    return SHARD_KEYS[zlib.crc32(run_id.encode()) % TIME_SHARDS]


def _run_id(item: dict[str, Any]) -> str:
    return str(item["run_id"])


def _to_item(run: Run) -> dict[str, Any]:
    data = run.model_dump(mode="json", exclude_none=True)
    for name in JSON_FIELDS:
        if name in data:
            data[name] = json.dumps(data[name])
    data["kind"] = time_shard(run.run_id)
    return data


def summary_from_item(item: dict[str, Any]) -> RunSummary:
    """A run's summary from an index item (which holds no arguments, result or token)."""
    return run_from_item(item).to_summary()


def run_from_item(item: dict[str, Any]) -> Run:
    data = {key: value for key, value in item.items() if key != "kind"}
    for name in JSON_FIELDS:
        if name in data:
            data[name] = json.loads(data[name])
    for name in ("timeout", "duration_ms"):
        if name in data:
            data[name] = int(data[name])
    return Run.model_validate(data)
