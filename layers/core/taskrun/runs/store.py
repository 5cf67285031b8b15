"""The run store: a small port, and its DynamoDB adapter.

Table design (template.yaml, RunsTable): key `run_id`; run ids are time-ordered, so they
double as the sort key of four indexes, each read newest first: `by_time` (`kind`, one of
a few shards, so that no single index partition takes every write), `by_task` (task_id),
`by_schedule` (the runs a schedule started; sparse) and `active` (the pending and running
runs, sharded as `by_time`; a run leaves it when it ends). The indexes hold keys and the
fields a run never changes (task, trigger), so a status move writes the table alone and
not three copies; a list reads its page's runs from the table by key. Arbitrary JSON
(arguments, result, error, usage) is kept as JSON text, so numbers keep their exact form
and no Decimal leaks out.
"""

from __future__ import annotations

import json
import re
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError

from taskrun import aws
from taskrun.access.scopes import EVERY_TASK, TaskAccess
from taskrun.errors import RunConflict, RunNotFound
from taskrun.ids import RUN_ID_PATTERN
from taskrun.models import (
    ACTIVE_STATUSES,
    ErrorType,
    Progress,
    Run,
    RunAttempt,
    RunError,
    RunStatus,
    RunSummary,
    Slot,
    TriggeredBy,
    format_time,
)
from taskrun.runs import cursors

JSON_FIELDS = ("arguments", "result", "error", "usage", "json_schema", "tags", "attempts", "retry", "slots", "progress")
RUN_ID = re.compile(RUN_ID_PATTERN)
KIND = "run"
ACTIVE = "active"  # the cursor's name for the `active` index's shards
INDEX_KEYS = ("kind", "active")  # attributes only the indexes read
TIME_SHARDS = 4  # `by_time` partitions: each takes a quarter of the writes
SHARD_KEYS = [f"{KIND}#{shard}" for shard in range(TIME_SHARDS)]
MAX_READS_PER_LIST = 8  # queries one list request may make; past them it answers with what it has and a cursor
FILTERED_READ_SIZE = 100  # items a filtered query evaluates at a time
BATCH_READ_SIZE = 100  # DynamoDB's most keys a BatchGetItem
BATCH_READ_ATTEMPTS = 6
SHARDED = ("by_time", "active")  # indexes whose partition key is one of the shards
# What a list shows of a run (RunSummary) and what the store needs to make one
SUMMARY_FIELDS = (
    "run_id",
    "task_id",
    "task_type",
    "revision",
    "status",
    "error",
    "triggered_by",
    "schedule_id",
    "parent_run_id",
    "webhook_url",
    "timeout",
    "execution_arn",
    "parent_execution",
    "created_at",
    "started_at",
    "ended_at",
    "duration_ms",
    "usage",
    "result_key",
    "cached",
    "cached_from",
    "tags",
    "rerun_of",
    "attempt",
    "next_attempt_at",
    "expires_at",
    "progress",
    "waiting_for",
)
# a write that starts a run holds only while the run has started before, has no ttl, or is within it
WITHIN_TTL = "(attribute_exists(started_at) OR attribute_not_exists(expires_at) OR expires_at > :now)"
MAX_RERUN_LINKS = 100  # re-runs a run lists (each re-run names its first run whatever their number)


@dataclass(frozen=True)
class RunFilter:
    schedule_id: str | None = None
    task_id: str | None = None
    status: RunStatus | None = None
    triggered_by: TriggeredBy | None = None
    tag: str | None = None
    tasks: TaskAccess = EVERY_TASK  # the caller's: runs of other tasks are left out


@dataclass(frozen=True)
class Waiter:
    """A run waiting for room in a limit, as the `waiting` index holds it."""

    run_id: str
    slots: list[Slot]
    timeout: int | None


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

    @classmethod
    def failed(cls, ended_at: datetime, error_type: ErrorType, message: str) -> Ending:
        """A run ending failed for a reason of taskrun's own (it could not be handed over, it
        expired, ...), not of its task's."""
        return cls(RunStatus.FAILED, ended_at, error=RunError(type=error_type, message=message))

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None:
            return None
        return max(0, int((self.ended_at - self.started_at).total_seconds() * 1000))


class RunStore(Protocol):
    def create(self, run: Run) -> None: ...

    def get(self, run_id: str) -> Run: ...

    def status_of(self, run_id: str) -> RunStatus: ...

    def set_progress(self, run_id: str, progress: Progress, attempt: int | None = None) -> bool: ...

    def list(self, filters: RunFilter, limit: int, cursor: str | None) -> tuple[list[RunSummary], str | None]: ...

    def mark_running(
        self, run_id: str, started_at: datetime, execution_arn: str | None = None, attempt: int | None = None
    ) -> Run: ...

    def requeue(self, run_id: str, attempts: Sequence[RunAttempt], next_at: datetime) -> Run: ...

    def release(self, run_id: str, now: datetime, attempt: int) -> Run: ...

    def link_rerun(self, run_id: str, rerun_id: str) -> None: ...

    def waiting(self, limit: str, after: str | None, count: int) -> Sequence[Waiter]: ...

    def admit(self, run_id: str, limit: str, now: datetime) -> Run: ...

    def wait_for_room(self, run_id: str, limit: str, attempt: int | None) -> Run: ...

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

    def status_of(self, run_id: str) -> RunStatus:
        """A run's status alone: the worker asks it while a task runs, to stop a cancelled one."""
        _known_shape(run_id)
        item = self.table.get_item(
            Key={"run_id": run_id},
            ConsistentRead=True,
            ProjectionExpression="#status",
            ExpressionAttributeNames={"#status": "status"},
        ).get("Item")
        if item is None:
            raise RunNotFound(run_id)
        return RunStatus(item["status"])

    def set_progress(self, run_id: str, progress: Progress, attempt: int | None = None) -> bool:
        """Keep a running run's last progress report (of `attempt`, if given); False if the
        run is no longer running, or runs another attempt by now."""
        _known_shape(run_id)
        condition = "#status = :running" + (" AND #attempt = :attempt" if attempt is not None else "")
        values: dict[str, Any] = {":progress": progress.model_dump_json(), ":running": RunStatus.RUNNING.value}
        names = {"#progress": "progress", "#status": "status"}
        if attempt is not None:
            values[":attempt"], names["#attempt"] = attempt, "attempt"
        return self.update_if(
            Key={"run_id": run_id},
            UpdateExpression="SET #progress = :progress",
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def list(self, filters: RunFilter, limit: int, cursor: str | None) -> tuple[list[RunSummary], str | None]:
        """Runs matching the filters, newest first, from the most selective index.

        The index's partitions (one, or the shards) are read side by side and merged by run
        id; the runs themselves are then read from the table, a batch at a time, as far as
        the page needs (the indexes hold keys and a run's fixed fields, never its status).
        A request makes at most MAX_READS_PER_LIST queries: a filter that matches little
        answers a short (even empty) page with a cursor rather than reading on."""
        if filters.task_id is not None and not filters.tasks.allows(filters.task_id):
            return [], None
        index, key_name, key_value = _index_for(filters)
        partitions = SHARD_KEYS if index in SHARDED else [key_value]
        others = cursors.filter_digest(
            filters.schedule_id,
            filters.task_id,
            filters.status,
            filters.triggered_by,
            filters.tasks.patterns,
            *([filters.tag] if filters.tag is not None else []),
        )
        before = cursors.decode(cursor, key_name, key_value, RUN_ID, others) if cursor else None
        filter_names: dict[str, str] = {}
        filter_values: dict[str, str] = {}
        conditions = []
        for name, value in (("task_id", filters.task_id), ("triggered_by", filters.triggered_by)):
            if value is not None and name != key_name:
                filter_names[f"#{name}"] = name
                filter_values[f":{name}"] = str(value)
                conditions.append(f"#{name} = :{name}")
        wanted = filters.status
        # a key's task patterns are judged on the runs read (the time index holds no task id)
        shown = filters.tasks if filters.task_id is None else EVERY_TASK
        filtered = bool(conditions) or wanted is not None or not shown.everything or filters.tag is not None
        page_size = FILTERED_READ_SIZE if filtered else limit

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

        found: list[str] = []
        resume: dict[str, dict[str, Any] | None] = dict.fromkeys(partitions)  # absent: read to its end
        runs: dict[str, Run | None] = {}  # read from the table so far (None: gone)
        reads = 0
        while True:
            for partition in list(resume):
                page = query(partition, resume[partition])
                reads += 1
                found += [item["run_id"] for item in page.get("Items", [])]
                if "LastEvaluatedKey" in page:
                    resume[partition] = page["LastEvaluatedKey"]
                else:
                    del resume[partition]
            # every partition still being read has been read down to its resume key: what is
            # newer than the highest of those is complete and in order
            bound = max((key["run_id"] for key in resume.values() if key), default="")
            ready = sorted((run_id for run_id in found if run_id >= bound), reverse=True)
            chosen: list[Run] = []
            for at in range(0, len(ready), page_size):
                batch = ready[at : at + page_size]
                runs.update(self._read_many([run_id for run_id in batch if run_id not in runs]))
                chosen += [
                    run
                    for run_id in batch
                    if (run := runs[run_id])
                    and wanted in (None, run.status)
                    and shown.allows(run.task_id)
                    and (filters.tag is None or filters.tag in run.tags)
                ]
                if len(chosen) >= limit:
                    chosen = chosen[:limit]
                    return [run.to_summary() for run in chosen], cursors.encode(
                        chosen[-1].run_id, key_name, key_value, others
                    )
            if not resume:
                return [run.to_summary() for run in chosen], None
            if reads + len(resume) > MAX_READS_PER_LIST:
                # answer what is complete; the next request goes on below the bound
                return [run.to_summary() for run in chosen], cursors.encode(bound, key_name, key_value, others)

    def _read_many(self, run_ids: Sequence[str]) -> dict[str, Run | None]:
        """Runs by id, as lists show them (no arguments or result read), a batch at a time."""
        read: dict[str, Run | None] = dict.fromkeys(run_ids)
        names = {f"#{name}": name for name in SUMMARY_FIELDS}
        for at in range(0, len(run_ids), BATCH_READ_SIZE):
            wanted: dict[str, Any] = {
                self.table.name: {
                    "Keys": [{"run_id": run_id} for run_id in run_ids[at : at + BATCH_READ_SIZE]],
                    "ProjectionExpression": ", ".join(names),
                    "ExpressionAttributeNames": names,
                }
            }
            for attempt in range(BATCH_READ_ATTEMPTS):
                answer = self.table.meta.client.batch_get_item(RequestItems=wanted)
                for item in answer.get("Responses", {}).get(self.table.name, []):
                    read[item["run_id"]] = run_from_item(item)
                wanted = answer.get("UnprocessedKeys") or {}
                if not wanted:
                    break
                time.sleep(min(0.05 * 2**attempt, 1.0))  # DynamoDB's advice for unprocessed keys
            else:
                raise RuntimeError("DynamoDB left keys unread after retrying: the table is throttled")
        return read

    def mark_running(
        self, run_id: str, started_at: datetime, execution_arn: str | None = None, attempt: int | None = None
    ) -> Run:
        """pending → running; with `attempt`, queued → running for that attempt only (a late
        or repeated wake of another attempt is a conflict). A run never started whose
        `expires_at` has passed is not started (a conflict)."""
        values: dict[str, Any] = {"status": RunStatus.RUNNING.value}
        if execution_arn is not None:
            values["execution_arn"] = execution_arn
        condition = WITHIN_TTL
        condition_values: dict[str, Any] = {":now": format_time(started_at)}
        if attempt is not None:
            condition += " AND attempt = :attempt"
            condition_values[":attempt"] = attempt
        return self._move(
            run_id,
            allowed_from=(RunStatus.QUEUED,) if attempt is not None else (RunStatus.PENDING,),
            values=values,
            unless_set={"started_at": format_time(started_at)},  # a retried run started with its first attempt
            condition=(condition, condition_values),
            remove=("next_attempt_at",),
        )

    def waiting(self, limit: str, after: str | None, count: int) -> Sequence[Waiter]:
        """Up to `count` runs waiting for room in `limit`, oldest first, after the run `after`."""
        request: dict[str, Any] = {
            "IndexName": "waiting",
            "KeyConditionExpression": "waiting_for = :limit" + (" AND run_id > :after" if after else ""),
            "ExpressionAttributeValues": {":limit": limit, **({":after": after} if after else {})},
            "ScanIndexForward": True,
            "Limit": count,
        }
        items = self.table.query(**request).get("Items", [])
        return [
            Waiter(
                run_id=item["run_id"],
                slots=[Slot.model_validate(slot) for slot in json.loads(item.get("slots", "[]"))],
                timeout=int(item["timeout"]) if "timeout" in item else None,
            )
            for item in items
        ]

    def admit(self, run_id: str, limit: str, now: datetime) -> Run:
        """A run that took its slots: waiting (queued, for `limit`) → pending, unless it was
        never started and its `expires_at` has passed (a conflict)."""
        return self._move(
            run_id,
            allowed_from=(RunStatus.QUEUED,),
            values={"status": RunStatus.PENDING.value},
            condition=(f"waiting_for = :limit AND {WITHIN_TTL}", {":limit": limit, ":now": format_time(now)}),
            remove=("waiting_for", "next_attempt_at"),
        )

    def wait_for_room(self, run_id: str, limit: str, attempt: int | None) -> Run:
        """A queued run whose start time came (attempt `attempt`), or a run just made, now
        waits for room in `limit` (listed in the `waiting` index)."""
        condition = ("attempt = :attempt", {":attempt": attempt}) if attempt is not None else None
        return self._move(
            run_id,
            allowed_from=(RunStatus.QUEUED,),
            values={"status": RunStatus.QUEUED.value, "waiting_for": limit},
            condition=condition,
            remove=("next_attempt_at",),
        )

    def link_rerun(self, run_id: str, rerun_id: str) -> None:
        """Add a re-run to the run's `reruns` (not a status move: an ended run stays ended).
        Past MAX_RERUN_LINKS the link is kept on the re-run alone, so the item stays small."""
        try:
            self.table.update_item(
                Key={"run_id": run_id},
                UpdateExpression="SET reruns = list_append(if_not_exists(reruns, :none), :new)",
                ConditionExpression=(
                    "attribute_exists(run_id) AND (attribute_not_exists(reruns) OR size(reruns) < :most)"
                ),
                ExpressionAttributeValues={":none": [], ":new": [rerun_id], ":most": MAX_RERUN_LINKS},
            )
        except ClientError as error:
            if not aws.is_condition_failure(error):
                raise

    def release(self, run_id: str, now: datetime, attempt: int) -> Run:
        """queued → pending for attempt `attempt`, unless it was never started and its
        `expires_at` has passed (a conflict): a queued flow whose start time has come."""
        return self._move(
            run_id,
            allowed_from=(RunStatus.QUEUED,),
            values={"status": RunStatus.PENDING.value},
            condition=(
                f"attempt = :attempt AND {WITHIN_TTL}",
                {":attempt": attempt, ":now": format_time(now)},
            ),
            remove=("next_attempt_at",),
        )

    def requeue(self, run_id: str, attempts: Sequence[RunAttempt], next_at: datetime) -> Run:
        """running → queued for the next attempt at `next_at`, the ended attempts kept."""
        values = {
            "status": RunStatus.QUEUED.value,
            "attempt": len(attempts) + 1,
            "attempts": json.dumps([attempt.model_dump(mode="json") for attempt in attempts]),
            "next_attempt_at": format_time(next_at),
        }
        # the next attempt reports its own progress
        return self._move(run_id, allowed_from=(RunStatus.RUNNING,), values=values, remove=("progress",))

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
        return self._move(
            run_id,
            allowed_from=ACTIVE_STATUSES,
            values=values,
            unless_set=unless_set,
            remove=("next_attempt_at", "waiting_for"),
        )

    def _move(
        self,
        run_id: str,
        allowed_from: tuple[RunStatus, ...],
        values: dict[str, Any],
        unless_set: dict[str, Any] | None = None,
        condition: tuple[str, dict[str, Any]] | None = None,
        remove: tuple[str, ...] = (),
    ) -> Run:
        """One conditional write: the move happens only from an allowed status (and where
        `condition` holds), so one writer wins. `unless_set` values are written only where
        the run has none yet; `remove` names attributes the move takes away."""
        _known_shape(run_id)
        unless_set = unless_set or {}
        removed = (*remove, "active") if RunStatus(values["status"]).is_done else remove  # out of the `active` index
        names = {f"#{name}": name for name in (*values, *unless_set, *removed)}
        names["#status"] = "status"
        expression_values = {f":{name}": value for name, value in (*values.items(), *unless_set.items())}
        allowed = {f":from{i}": status.value for i, status in enumerate(allowed_from)}
        assignments = [f"#{name} = :{name}" for name in values]
        assignments += [f"#{name} = if_not_exists(#{name}, :{name})" for name in unless_set]
        expression = "SET " + ", ".join(assignments)
        if removed:
            expression += " REMOVE " + ", ".join(f"#{name}" for name in removed)
        checked = f"attribute_exists(run_id) AND #status IN ({', '.join(allowed)})"
        if condition is not None:
            checked += " AND " + condition[0]
            expression_values.update(condition[1])
        try:
            response = self.table.update_item(
                Key={"run_id": run_id},
                UpdateExpression=expression,
                ConditionExpression=checked,
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


def visible(store: RunStore, run_id: str, access: TaskAccess) -> Run:
    """A run the caller may see: a run of a task outside their key's patterns is not found."""
    run = store.get(run_id)
    if not access.allows(run.task_id):
        raise RunNotFound(run_id)
    return run


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
    if filters.status in ACTIVE_STATUSES:
        return "active", "active", ACTIVE
    return "by_time", "kind", KIND


def time_shard(run_id: str) -> str:
    """The `by_time` partition of a run: spread evenly, fixed for the run's life."""
    return SHARD_KEYS[zlib.crc32(run_id.encode()) % TIME_SHARDS]


def _to_item(run: Run) -> dict[str, Any]:
    data = run.model_dump(mode="json", exclude_none=True)
    if not data.get("slots"):
        data.pop("slots", None)  # so that the stream's filter tells limited runs by it
    for name in JSON_FIELDS:
        if name in data:
            data[name] = json.dumps(data[name])
    data["kind"] = time_shard(run.run_id)
    if not run.status.is_done:
        data["active"] = data["kind"]
    return data


def run_from_item(item: dict[str, Any]) -> Run:
    data = {key: value for key, value in item.items() if key not in INDEX_KEYS}
    for name in JSON_FIELDS:
        if name in data:
            data[name] = json.loads(data[name])
    for name in ("timeout", "duration_ms", "attempt"):
        if name in data:
            data[name] = int(data[name])
    return Run.model_validate(data)
