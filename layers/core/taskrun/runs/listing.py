"""Listing runs, for the run store's `list`: the filters a list takes (RunFilter), the index
that answers them, its partitions (one, or the shards of `by_time` or `active`) queried side
by side and merged newest first, and the listed runs read from the table by key, a batch at
a time. A request makes a bounded number of queries and answers with a cursor
(taskrun.runs.cursors) where it stops.

A list of active runs reads `active` and, for the short runs kept out of it (the runs a
request waits for: taskrun.runs.items), the `by_time` shards of the last RECENT_SECONDS;
`unlisted_active` finds, for the deadline sweeper, the short runs older than that which
have not ended (their request and worker both lost)."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskrun.access.scopes import EVERY_TASK, TaskAccess
from taskrun.ids import RUN_ID_PATTERN, first_run_id_at
from taskrun.models import ACTIVE_STATUSES, Run, RunStatus, RunSummary, TriggeredBy
from taskrun.runs import cursors
from taskrun.runs.items import KIND, SHARD_KEYS, run_from_item

RUN_ID = re.compile(RUN_ID_PATTERN)
ACTIVE = "active"  # the cursor's name for the `active` index's shards
MAX_READS_PER_LIST = 8  # queries one list request may make; past them it answers with what it has and a cursor
FILTERED_READ_SIZE = 100  # items a filtered query evaluates at a time
BATCH_READ_SIZE = 100  # DynamoDB's most keys a BatchGetItem
BATCH_READ_ATTEMPTS = 6
SHARDED = ("by_time", "active")  # indexes whose partition key is one of the shards
# How far back a list of active runs reads `by_time` for short runs: a short run's timeout
# and the worker's start fit in SHORT_RUN_SECONDS (taskrun.runs.launch), so it has ended
# well within this unless its request and its worker were both lost.
RECENT_SECONDS = 60
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


@dataclass(frozen=True)
class RunFilter:
    schedule_id: str | None = None
    task_id: str | None = None
    status: RunStatus | None = None
    triggered_by: TriggeredBy | None = None
    tag: str | None = None
    tasks: TaskAccess = EVERY_TASK  # the caller's: runs of other tasks are left out


def list_runs(table: Any, filters: RunFilter, limit: int, cursor: str | None) -> tuple[list[RunSummary], str | None]:
    """Runs of the runs `table` matching the filters, newest first, from the most selective index.

    The index's partitions (one, or the shards) are read side by side and merged by run
    id; the runs themselves are then read from the table, a batch at a time, as far as
    the page needs (the indexes hold keys and a run's fixed fields, never its status).
    A request makes at most MAX_READS_PER_LIST queries (two for each partition, if more):
    a filter that matches little answers a short (even empty) page with a cursor rather
    than reading on."""
    if filters.task_id is not None and not filters.tasks.allows(filters.task_id):
        return [], None
    index, key_name, key_value = _index_for(filters)
    partitions = [Partition(index, key_name, value) for value in (SHARD_KEYS if index in SHARDED else [key_value])]
    if index == "active":  # and the short runs, by time
        since = first_run_id_at(time.time() - RECENT_SECONDS)
        partitions += [Partition("by_time", "kind", shard, since) for shard in SHARD_KEYS]
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

    def query(partition: Partition, start: dict[str, Any] | None) -> dict[str, Any]:
        request = partition.query(before, page_size)
        request["ExpressionAttributeNames"].update(filter_names)
        request["ExpressionAttributeValues"].update(filter_values)
        if conditions:
            request["FilterExpression"] = " AND ".join(conditions)
        if start is not None:
            request["ExclusiveStartKey"] = start
        return dict(table.query(**request))

    found: set[str] = set()  # a run may be in two of the partitions read
    # absent: read to its end (a partition whose time bound is past the cursor has nothing)
    resume: dict[Partition, dict[str, Any] | None] = {
        partition: None for partition in partitions if not (before and partition.since and partition.since >= before)
    }
    most_reads = max(MAX_READS_PER_LIST, 2 * len(resume))
    runs: dict[str, Run | None] = {}  # read from the table so far (None: gone)
    reads = 0
    while True:
        for partition in list(resume):
            page = query(partition, resume[partition])
            reads += 1
            found.update(item["run_id"] for item in page.get("Items", []) if item["run_id"] != before)
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
            runs.update(_read_many(table, [run_id for run_id in batch if run_id not in runs]))
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
        if reads + len(resume) > most_reads:
            # answer what is complete; the next request goes on below the bound
            return [run.to_summary() for run in chosen], cursors.encode(bound, key_name, key_value, others)


@dataclass(frozen=True)
class Partition:
    """One partition of an index a list reads, newest first; `since`: only its runs made at
    or after that id."""

    index: str
    key_name: str
    key: str
    since: str | None = None

    def query(self, before: str | None, page_size: int) -> dict[str, Any]:
        """A Query of the partition's runs below `before` (None: from the newest)."""
        condition = "#k = :k"
        names = {"#k": self.key_name}
        values = {":k": self.key}
        if before and self.since:  # both bounds inclusive: the listing leaves out `before` itself
            condition += " AND #run_id BETWEEN :since AND :before"
            values |= {":since": self.since, ":before": before}
        elif before:
            condition += " AND #run_id < :before"
            values[":before"] = before
        elif self.since:
            condition += " AND #run_id >= :since"
            values[":since"] = self.since
        if before or self.since:
            names["#run_id"] = "run_id"
        return {
            "IndexName": self.index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,
            "Limit": page_size,
        }


def unlisted_active(table: Any, made_from: float, made_before: float, most: int) -> list[RunSummary]:
    """The runs made in [made_from, made_before) (Unix times) that have not ended and are not
    in `active`: short runs whose request and worker were both lost (a short run otherwise
    ends within its request's wait, or enters `active` when it outlives it). The interval's
    runs are read from the indexes, oldest first, the `most` made first of them, then the
    candidates from the table."""
    since, until = first_run_id_at(made_from), first_run_id_at(made_before)
    if since >= until:
        return []

    def ids(index: str, key_name: str) -> set[str]:
        found: set[str] = set()
        for shard in SHARD_KEYS:
            request = Partition(index, key_name, shard, since).query(until, 1000)
            request["ScanIndexForward"] = True
            read = 0
            while True:
                page = table.query(**request)
                items = [item["run_id"] for item in page.get("Items", []) if item["run_id"] != until]
                found.update(items)
                read += len(items)
                if "LastEvaluatedKey" not in page or read >= most:  # past the `most` oldest of all
                    break
                request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return found

    # `active` holds no run `by_time` does not, so its `most` oldest reach as far as these
    made = sorted(ids("by_time", "kind"))[:most]
    candidates = sorted(set(made) - ids("active", "active"))
    read = _read_many(table, candidates)
    return [run.to_summary() for run_id in candidates if (run := read[run_id]) and run.status in ACTIVE_STATUSES]


def _read_many(table: Any, run_ids: Sequence[str]) -> dict[str, Run | None]:
    """Runs by id, as lists show them (no arguments or result read), a batch at a time."""
    read: dict[str, Run | None] = dict.fromkeys(run_ids)
    names = {f"#{name}": name for name in SUMMARY_FIELDS}
    for at in range(0, len(run_ids), BATCH_READ_SIZE):
        wanted: dict[str, Any] = {
            table.name: {
                "Keys": [{"run_id": run_id} for run_id in run_ids[at : at + BATCH_READ_SIZE]],
                "ProjectionExpression": ", ".join(names),
                "ExpressionAttributeNames": names,
            }
        }
        for attempt in range(BATCH_READ_ATTEMPTS):
            answer = table.meta.client.batch_get_item(RequestItems=wanted)
            for item in answer.get("Responses", {}).get(table.name, []):
                read[item["run_id"]] = run_from_item(item)
            wanted = answer.get("UnprocessedKeys") or {}
            if not wanted:
                break
            time.sleep(min(0.05 * 2**attempt, 1.0))  # DynamoDB's advice for unprocessed keys
        else:
            raise RuntimeError("DynamoDB left keys unread after retrying: the table is throttled")
    return read


def _index_for(filters: RunFilter) -> tuple[str, str, str]:
    if filters.schedule_id is not None:
        return "by_schedule", "schedule_id", filters.schedule_id
    if filters.task_id is not None:
        return "by_task", "task_id", filters.task_id
    if filters.status in ACTIVE_STATUSES:
        return "active", "active", ACTIVE
    return "by_time", "kind", KIND
