"""The requests and answers of the API's run routes: a start, a re-run, a batch, the
compatible endpoint's, health."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field

from taskrun.ids import TaskId, WebhookUrl
from taskrun.modelbase import Model
from taskrun.models import MAX_DELAY_SECONDS, MAX_WAIT_TIMEOUT, ConcurrencyKey, ErrorType, RunView, Tags, TaskType


class StartRunRequest(Model):
    """Body of POST /v1/runs. `wait` and `wait_timeout` may also come as query parameters."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"task_id": "examples/greet", "arguments": {"name": "Ada"}, "wait": True, "wait_timeout": 10},
                {"task_id": "examples/sleep", "arguments": {"seconds": 30}, "webhook_url": "https://example.com/hook"},
                {
                    "task_id": "examples/greet",
                    "arguments": {"name": "Ada"},
                    "delay": 60,
                    "ttl": 600,
                    "tags": ["nightly"],
                },
            ]
        },
    )

    task_id: TaskId
    task_type: TaskType | None = Field(default=None, description="When given, must match the task's type.")
    arguments: dict[str, Any] = Field(default_factory=dict)
    revision: str | None = Field(default=None, description="Pin a revision instead of the traffic weights.")
    wait: bool | None = None
    wait_timeout: float | None = Field(default=None, ge=0, le=MAX_WAIT_TIMEOUT)
    webhook_url: WebhookUrl | None = None
    json_schema: dict[str, Any] | None = Field(
        default=None,
        description="A JSON Schema (Draft 2020-12) the result must meet, else the run fails with a validation_error.",
    )
    cache: bool = Field(
        default=True, description="false runs the task afresh even when its cache holds a result for these arguments."
    )
    tags: Tags = Field(default_factory=list)
    delay: float | None = Field(
        default=None, ge=0, le=MAX_DELAY_SECONDS, description="Start the run this many seconds from now (queued until)."
    )
    run_at: datetime | None = Field(
        default=None, description="Start the run at this time (RFC 3339; at most a minute past, at most 30 days ahead)."
    )
    ttl: float | None = Field(
        default=None,
        gt=0,
        le=MAX_DELAY_SECONDS,
        description="Seconds from now: a run not started by then ends failed with the error type `expired`.",
    )
    concurrency_key: ConcurrencyKey | None = None


class RerunRequest(Model):
    """Body of POST /v1/runs/{run_id}/rerun (optional)."""

    model_config = ConfigDict(
        extra="forbid", strict=True, json_schema_extra={"examples": [{}, {"revision": "current"}]}
    )

    revision: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description='Absent: the first run\'s revision; "current": chosen by the traffic weights; else that revision.',
    )
    wait: bool | None = None
    wait_timeout: float | None = Field(default=None, ge=0, le=MAX_WAIT_TIMEOUT)


MAX_BATCH = 100


class BatchRequest(Model):
    """Body of POST /v1/runs/batch: start requests as POST /v1/runs takes them (without waits)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "runs": [
                        {"task_id": "examples/greet", "arguments": {"name": "Ada"}},
                        {"task_id": "examples/greet", "arguments": {"name": "Bo"}, "delay": 60},
                    ]
                }
            ]
        },
    )

    runs: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_BATCH)


class BatchItem(Model):
    """One request's outcome: the run it started (201, or 200 for an Idempotency-Key replay),
    or the problem that refused it."""

    status: int
    run: RunView | None = None
    problem: dict[str, Any] | None = Field(default=None, description="The problem+json refusing this request.")


class BatchAnswer(Model):
    runs: list[BatchItem]


class CompatRunRequest(Model):
    """Body of the compatible POST /api/v0/tools/tasks/run."""

    task_id: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    task_type: TaskType = TaskType.SCRIPT
    json_schema: dict[str, Any] | None = None


class CompatRunResponse(Model):
    success: bool
    error: str | None = None
    error_type: ErrorType | None = None
    job_id: str | None = None
    result: Any = None


class Health(Model):
    status: str = "ok"
