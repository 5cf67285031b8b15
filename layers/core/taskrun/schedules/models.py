"""What a schedule is: its request, its record, its view, its state; the ids and enums of
schedules."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import ConfigDict, Field

from taskrun.ids import TaskId, WebhookUrl
from taskrun.modelbase import Model
from taskrun.models import RunStatus, Tags, UtcTime
from taskrun.schedules.expressions import Expression, ExpressionText

logger = Logger(child=True)


SCHEDULE_ID_PATTERN = r"^sch_[0-9a-z]{26}$"
SCHEDULE_ID = re.compile(SCHEDULE_ID_PATTERN)
# runs of a schedule declared in template.yaml carry its declared name as their schedule_id
DECLARED_NAME_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
KIND = "schedule"


class ScheduleState(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"
    DISABLED = "disabled"


class Overlap(StrEnum):
    ALLOW = "allow"  # a run starts at its time whatever the last one is doing
    SKIP = "skip"  # no run starts while the last one is still pending or running


# The shape of an IANA zone name (Europe/Paris, UTC, Etc/GMT+5); whether it is one is checked apart
TIMEZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$"


class ScheduleFields(Model):
    """What a client sets on a schedule."""

    model_config = ConfigDict(extra="forbid")

    task_id: TaskId
    arguments: dict[str, Any] = Field(default_factory=dict)
    expression: ExpressionText = Field(
        description="EventBridge Scheduler's syntax: at(...), rate(...) or cron(...)",
        examples=["cron(0 9 ? * MON-FRI *)", "rate(5 minutes)", "at(2026-12-01T10:00:00)"],
    )
    timezone: str = Field(
        default="UTC",
        min_length=1,
        max_length=64,
        pattern=TIMEZONE_PATTERN,
        description="IANA time zone of the expression.",
    )
    enabled: bool = True
    webhook_url: WebhookUrl | None = None
    description: str | None = Field(default=None, max_length=1024)
    overlap: Overlap = Overlap.ALLOW
    start_at: UtcTime | None = Field(
        default=None,
        description="A rate schedule fires first at this moment (by default, one period after it is made).",
    )
    tags: Tags = Field(default_factory=list, description="Tags each run of the schedule carries.")


class ScheduleRequest(ScheduleFields):
    """Body of POST /v1/schedules."""


def _not_null(schema: dict[str, Any]) -> None:
    """A field that may be left out but not be null (update() refuses a null): its document
    shows it without the null branch or default."""
    schema.pop("default", None)
    branches = [branch for branch in schema.pop("anyOf", []) if branch.get("type") != "null"]
    if len(branches) == 1:
        schema.update(branches[0])
    elif branches:
        schema["anyOf"] = branches


class SchedulePatch(Model):
    """Body of PATCH /v1/schedules/{schedule_id}: the fields to change."""

    model_config = ConfigDict(extra="forbid")

    # Left out, a field keeps its value; these cannot be null (the others: null clears them).
    task_id: TaskId | None = Field(default=None, json_schema_extra=_not_null)
    arguments: dict[str, Any] | None = Field(default=None, json_schema_extra=_not_null)
    expression: ExpressionText | None = Field(default=None, json_schema_extra=_not_null)
    timezone: str | None = Field(
        default=None, min_length=1, max_length=64, pattern=TIMEZONE_PATTERN, json_schema_extra=_not_null
    )
    enabled: bool | None = Field(default=None, json_schema_extra=_not_null)
    webhook_url: WebhookUrl | None = None
    description: str | None = Field(default=None, max_length=1024)
    overlap: Overlap | None = Field(default=None, json_schema_extra=_not_null)
    start_at: UtcTime | None = None
    tags: Tags | None = Field(default=None, json_schema_extra=_not_null)


class ExecuteRequest(Model):
    """Body of POST /v1/schedules/{schedule_id}/execute (may be empty)."""

    model_config = ConfigDict(extra="forbid")

    arguments: dict[str, Any] | None = Field(
        default=None, description="Arguments that replace the schedule's own, key by key, for this run."
    )


class Schedule(ScheduleFields):
    """A schedule as the table keeps it."""

    model_config = ConfigDict(extra="ignore")

    schedule_id: str
    created_at: UtcTime
    updated_at: UtcTime
    fired_at: UtcTime | None = Field(default=None, description="The time of the last firing (or run now).")
    last_run_id: str | None = None
    last_error: str | None = Field(default=None, description="Why the last firing started no run.")
    firing_run_id: str | None = Field(default=None, description="The run the last firing makes (once).")
    # whether the task's parameters call some of the arguments secret (None: saved before it was noted)
    secret_arguments: bool | None = None


class LastRun(Model):
    run_id: str
    status: RunStatus
    started_at: UtcTime | None = None
    ended_at: UtcTime | None = None


class ScheduleView(ScheduleFields):
    """A schedule as the API shows it."""

    schedule_id: str
    state: ScheduleState
    next_run_at: UtcTime | None = None
    last_run: LastRun | None = None
    last_error: str | None = None
    created_at: UtcTime
    updated_at: UtcTime


class ScheduleList(Model):
    schedules: list[ScheduleView]
    next_cursor: str | None = None


def is_spent(schedule: Schedule, expression: Expression) -> bool:
    """A one-off that has fired (or was run now) never fires again."""
    return expression.one_off and schedule.fired_at is not None
