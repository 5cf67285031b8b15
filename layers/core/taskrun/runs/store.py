"""The run store: a small port, and its DynamoDB adapter.

Table design (template.yaml, RunsTable): key `run_id`; run ids are time-ordered, so they
double as the sort key of four indexes, each read newest first: `by_time` (`kind`, one of
a few shards, so that no single index partition takes every write), `by_task` (task_id),
`by_schedule` (the runs a schedule started; sparse) and `active` (the pending and running
runs, sharded as `by_time`; a run leaves it when it ends, and a short run, one its request
waits for, never enters it: taskrun.runs.items). The indexes hold keys and the
fields a run never changes (task, trigger), so a status move writes the table alone and
not three copies; a list reads its page's runs from the table by key (taskrun.runs.listing).
A run is one item (taskrun.runs.items): arbitrary JSON (arguments, result, error, usage) is
kept as JSON text, so numbers keep their exact form and no Decimal leaks out.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from botocore.exceptions import ClientError

from taskrun import aws
from taskrun.access.scopes import TaskAccess
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
    format_time,
)
from taskrun.runs.items import run_from_item, time_shard, to_item
from taskrun.runs.listing import RunFilter, list_runs, unlisted_active

RUN_ID = re.compile(RUN_ID_PATTERN)
# a write that starts a run holds only while the run has started before, has no ttl, or is within it
WITHIN_TTL = "(attribute_exists(started_at) OR attribute_not_exists(expires_at) OR expires_at > :now)"
USAGE_TRIES = 5  # writes of a run's usage tried against others' at once
MAX_RERUN_LINKS = 100  # re-runs a run lists (each re-run names its first run whatever their number)


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
    def create(self, run: Run, short: bool = False) -> None: ...

    def get(self, run_id: str) -> Run: ...

    def status_of(self, run_id: str) -> RunStatus: ...

    def set_progress(self, run_id: str, progress: Progress, attempt: int | None = None) -> bool: ...

    def add_usage(self, run_id: str, usage: dict[str, float]) -> bool: ...

    def list(self, filters: RunFilter, limit: int, cursor: str | None) -> tuple[list[RunSummary], str | None]: ...

    def list_as_active(self, run_id: str) -> bool: ...

    def unlisted_active(self, made_from: datetime, made_before: datetime, most: int) -> Sequence[RunSummary]: ...

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
    def create(self, run: Run, short: bool = False) -> None:
        """Record a new run; `short`: one its request waits for, kept out of the `active`
        index (taskrun.runs.items)."""
        try:
            self.table.put_item(Item=to_item(run, short), ConditionExpression="attribute_not_exists(run_id)")
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

    def add_usage(self, run_id: str, usage: dict[str, float]) -> bool:
        """Add to a running run's usage counters (a code-first flow's, as each invocation of
        its function ends); False if the run is no longer running. A write that found the
        counters changed under it is tried again on what it found."""
        _known_shape(run_id)
        names = {"#usage": "usage", "#status": "status"}
        for _ in range(USAGE_TRIES):
            item = self.table.get_item(
                Key={"run_id": run_id},
                ConsistentRead=True,
                ProjectionExpression="#usage, #status",
                ExpressionAttributeNames=names,
            ).get("Item")
            if item is None or item.get("status") != RunStatus.RUNNING.value:
                return False
            before = item.get("usage")
            total = added(json.loads(before) if before else None, usage) or {}
            values: dict[str, Any] = {":usage": json.dumps(total), ":running": RunStatus.RUNNING.value}
            unchanged = "attribute_not_exists(#usage)"
            if before is not None:
                unchanged, values[":before"] = "#usage = :before", before
            if self.update_if(
                Key={"run_id": run_id},
                UpdateExpression="SET #usage = :usage",
                ConditionExpression=f"#status = :running AND {unchanged}",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            ):
                return True
        return False

    def list(self, filters: RunFilter, limit: int, cursor: str | None) -> tuple[list[RunSummary], str | None]:
        """Runs matching the filters, newest first (taskrun.runs.listing)."""
        return list_runs(self.table, filters, limit, cursor)

    def list_as_active(self, run_id: str) -> bool:
        """Put a short run that will outlive its request in the `active` index (nothing if it
        has ended by now); False if the write could not be made (throttled past the SDK's
        retries, say)."""
        _known_shape(run_id)
        statuses = {f":s{i}": status.value for i, status in enumerate(ACTIVE_STATUSES)}
        try:
            self.update_if(
                Key={"run_id": run_id},
                UpdateExpression="SET #active = :active",
                ConditionExpression=f"#status IN ({', '.join(statuses)})",
                ExpressionAttributeNames={"#active": "active", "#status": "status"},
                ExpressionAttributeValues={":active": time_shard(run_id), **statuses},
            )
        except ClientError:
            return False
        return True

    def unlisted_active(self, made_from: datetime, made_before: datetime, most: int) -> Sequence[RunSummary]:
        """The short runs made in the interval that have not ended, of its `most` runs made
        first (taskrun.runs.listing)."""
        return unlisted_active(self.table, made_from.timestamp(), made_before.timestamp(), most)

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
        status = RunStatus(values["status"])
        removed = (*remove, "active") if status.is_done else remove  # out of the `active` index
        if status in (RunStatus.PENDING, RunStatus.QUEUED):  # a short run that now outlives its request
            values = {**values, "active": time_shard(run_id)}
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
            from boto3.dynamodb.types import TypeDeserializer  # boto3 itself is imported with the first client

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


def added(usage: dict[str, float] | None, more: dict[str, float] | None) -> dict[str, float] | None:
    """Usage counters with `more` added to them (None when there are none)."""
    total = dict(usage or {})
    for name, amount in (more or {}).items():
        total[name] = total.get(name, 0) + amount
    return total or None


def end_once(store: RunStore, run_id: str, ending: Ending) -> tuple[Run, bool]:
    """End a run unless another writer ended it first (a repeated delivery, a cancel);
    return the run as it now stands and whether this call ended it."""
    try:
        return store.finish(run_id, ending), True
    except RunConflict:
        return store.get(run_id), False
