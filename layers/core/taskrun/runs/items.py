"""A run as the runs table keeps it: one item a run, its arbitrary JSON (arguments, result,
error, usage and the rest of JSON_FIELDS) as JSON text, so numbers keep their exact form and
no Decimal leaks out; its `by_time` shard in `kind` (one of TIME_SHARDS, fixed by a hash of
the run id), and the same shard in `active` while the run has not ended, unless it is short:
a run the request that started it waits for, run by a synchronous invoke of the worker,
ends within that wait, and lists find it by the time it was made while it may be active
(taskrun.runs.listing), which spares each such run its two `active` index writes. A short
run that comes to outlive its request enters `active`: with a move into pending or queued
(a retry put off), or by itself (handed over after the synchronous invoke failed, or again
at a local restart: the run store's `list_as_active`). Those two are keys of the indexes
alone: a run read back has neither."""

from __future__ import annotations

import json
import zlib
from typing import Any

from taskrun.models import Run

JSON_FIELDS = ("arguments", "result", "error", "usage", "json_schema", "tags", "attempts", "retry", "slots", "progress")
KIND = "run"
INDEX_KEYS = ("kind", "active")  # attributes only the indexes read
TIME_SHARDS = 4  # `by_time` partitions: each takes a quarter of the writes
SHARD_KEYS = [f"{KIND}#{shard}" for shard in range(TIME_SHARDS)]


def time_shard(run_id: str) -> str:
    """The `by_time` partition of a run: spread evenly, fixed for the run's life."""
    return SHARD_KEYS[zlib.crc32(run_id.encode()) % TIME_SHARDS]


def to_item(run: Run, short: bool = False) -> dict[str, Any]:
    data = run.model_dump(mode="json", exclude_none=True)
    if not data.get("slots"):
        data.pop("slots", None)  # so that the stream's filter tells limited runs by it
    for name in JSON_FIELDS:
        if name in data:
            data[name] = json.dumps(data[name])
    data["kind"] = time_shard(run.run_id)
    if not run.status.is_done and not short:
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
