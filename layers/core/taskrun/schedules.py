"""Schedules: a task run at a time or over and over, in EventBridge Scheduler's own syntax.

A schedule is a record in the schedules table (the one source of truth: what the API
shows) and an EventBridge Scheduler schedule in the stack's group, whose target, the
schedule-target function, starts the run through the same run service as the API
(`triggered_by: schedule`). Locally the stack's own clock fires them (taskrun.local).

A schedule's state and next run are worked out when it is read, from its record and its
last run: nothing has to be written when a run ends.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aws_croniter import AwsCroniter
from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema
from pydantic_core import PydanticCustomError

from taskrun import aws, cursors
from taskrun.access import EVERY_TASK, TaskAccess
from taskrun.catalog import Catalog
from taskrun.errors import FieldError, InvalidInput, RunConflict, RunNotFound, ScheduleNotFound, TaskNotFound
from taskrun.ids import TaskId, WebhookUrl, new_run_id
from taskrun.masking import MASK
from taskrun.models import Run, RunStatus, Tags, TriggeredBy, UtcTime, format_time, utcnow
from taskrun.service import MAX_ARGUMENTS_BYTES, RunRequest, RunService
from taskrun.telemetry import count
from taskrun.webhooks import check_target

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


# ---------------------------------------------------------------------------- expressions

# Each kind's syntax, one pattern for the parser and the API document alike (JSON Schema's
# regular expressions, Rust's and Python's read them the same: ASCII digits, no lookaround).
# What a pattern cannot judge is checked apart: a real date, still ahead; a cron's fields
# as EventBridge Scheduler reads them, firing again.
_DATE_TIME = r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
AT_PATTERN = rf"at\(({_DATE_TIME})\)"
RATE_PATTERN = r"rate\((1 (?:minute|hour|day)|(?:[2-9]|[1-9][0-9]{1,5}) (?:minutes|hours|days))\)"
_CRON_FIELD = r"[0-9A-Za-z*?,/#-]+"
CRON_PATTERN = rf"cron\(({_CRON_FIELD}(?: {_CRON_FIELD}){{5}})\)"
EXPRESSION_PATTERN = f"^(?:{AT_PATTERN}|{RATE_PATTERN}|{CRON_PATTERN})$"
_AT, _RATE, _CRON = (re.compile(pattern) for pattern in (AT_PATTERN, RATE_PATTERN, CRON_PATTERN))
_UNIT = {"minute": timedelta(minutes=1), "hour": timedelta(hours=1), "day": timedelta(days=1)}
_SYNTAX = {
    "at(": "at(...) takes a date and time: at(yyyy-mm-ddThh:mm:ss)",
    "rate(": "rate(N unit) takes N from 1 to 999999 and a unit, singular for 1 (1 minute), else plural (5 minutes)",
    "cron(": "cron(...) takes six fields one space apart: minutes hours day-of-month month day-of-week year",
}


@dataclass(frozen=True)
class Expression:
    """A parsed `at(...)`, `rate(...)` or `cron(...)`, in its timezone."""

    text: str
    zone: ZoneInfo
    at: datetime | None = None  # a one-off's moment, in UTC
    period: timedelta | None = None
    cron: AwsCroniter | None = None

    @property
    def one_off(self) -> bool:
        return self.at is not None

    def next_after(self, moment: datetime, anchor: datetime) -> datetime | None:
        """The first firing strictly after `moment` (a rate fires at anchor, anchor + period, ...)."""
        if self.at is not None:
            return self.at if self.at > moment else None
        if self.period is not None:
            if moment < anchor:
                return anchor
            steps = (moment - anchor) // self.period + 1
            return anchor + steps * self.period
        assert self.cron is not None
        # the cron is read in the schedule's timezone: work on wall-clock time, then back to UTC
        wall = moment.astimezone(self.zone).replace(tzinfo=UTC)
        found = self.cron.get_next(wall)[0]
        if found is None:
            return None
        return found.replace(tzinfo=self.zone).astimezone(UTC)


def parse_expression(text: str, timezone: str, now: datetime | None = None) -> Expression:
    """Check an expression as EventBridge Scheduler would; InvalidInput names the field."""
    zone = parse_timezone(timezone)
    text = text.strip()
    if match := _AT.fullmatch(text):
        try:
            local = datetime.fromisoformat(match.group(1))
        except ValueError:
            raise _bad_expression(text, "at(...) takes a real date and time: yyyy-mm-ddThh:mm:ss") from None
        moment = local.replace(tzinfo=zone).astimezone(UTC)
        if now is not None and moment <= now:
            raise _bad_expression(text, f"at(...) is in the past ({format_time(moment)})")
        return Expression(text, zone, at=moment)
    if match := _RATE.fullmatch(text):
        value, unit = match.group(1).split(" ")
        return Expression(text, zone, period=int(value) * _UNIT[unit.rstrip("s")])
    if match := _CRON.fullmatch(text):
        try:
            cron = AwsCroniter(match.group(1))
        except Exception as error:  # the library's own errors, and what hostile text provokes
            raise _bad_expression(text, f"not a cron expression EventBridge Scheduler takes: {error}") from None
        expression = Expression(text, zone, cron=cron)
        try:
            if expression.next_after(now or utcnow(), now or utcnow()) is None:
                raise _bad_expression(text, "the cron expression never fires again")
        except InvalidInput:
            raise
        except Exception as error:
            raise _bad_expression(text, f"not a cron expression EventBridge Scheduler takes: {error}") from None
        return expression
    raise _bad_expression(text, syntax_problem(text))


def syntax_problem(text: str) -> str:
    """What is wrong with the shape of an expression EXPRESSION_PATTERN refuses."""
    kind = next((prefix for prefix in _SYNTAX if text.startswith(prefix)), None)
    if kind is None:
        return "must be at(yyyy-mm-ddThh:mm:ss), rate(N minutes|hours|days) or cron(min hour dom month dow year)"
    return _SYNTAX[kind]


def _check_syntax(text: str) -> str:
    """The request models' check of an expression's shape, by the pattern their document gives."""
    if not re.fullmatch(EXPRESSION_PATTERN, text):
        raise PydanticCustomError("expression_syntax", syntax_problem(text))
    return text


ExpressionText = Annotated[
    str,
    StringConstraints(min_length=1, max_length=256),
    AfterValidator(_check_syntax),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 256, "pattern": EXPRESSION_PATTERN}),
]


def parse_timezone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(
            "the timezone is not one of the IANA time zones",
            [FieldError("body.timezone", "an IANA time zone such as Europe/Paris or UTC", name[:100])],
        ) from None


def _bad_expression(text: str, message: str) -> InvalidInput:
    return InvalidInput("the schedule expression is not valid", [FieldError("body.expression", message, text[:300])])


# ---------------------------------------------------------------------------- models


# The shape of an IANA zone name (Europe/Paris, UTC, Etc/GMT+5); whether it is one is checked apart
TIMEZONE_PATTERN = r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$"


class ScheduleFields(BaseModel):
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


class SchedulePatch(BaseModel):
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


class ExecuteRequest(BaseModel):
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


class LastRun(BaseModel):
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


class ScheduleList(BaseModel):
    schedules: list[ScheduleView]
    next_cursor: str | None = None


# ---------------------------------------------------------------------------- store


class ScheduleStore(aws.TableAdapter):
    """Schedules in DynamoDB: key `schedule_id`; `by_kind` lists them all, `by_task` a task's."""

    def put(self, schedule: Schedule, new: bool = False) -> None:
        item = {k: v for k, v in schedule.model_dump(mode="json").items() if v is not None}
        item["arguments"] = json.dumps(schedule.arguments)
        item["kind"] = KIND
        condition = "attribute_not_exists(schedule_id)" if new else "attribute_exists(schedule_id)"
        try:
            self.table.put_item(Item=item, ConditionExpression=condition)
        except ClientError as error:
            if aws.is_condition_failure(error) and not new:
                raise ScheduleNotFound(schedule.schedule_id) from error
            raise

    def count(self, at_most: int) -> int:
        """How many schedules the stack holds, counted up to `at_most` (the index's keys only)."""
        request: dict[str, Any] = {
            "IndexName": "by_kind",
            "KeyConditionExpression": "#k = :k",
            "ExpressionAttributeNames": {"#k": "kind"},
            "ExpressionAttributeValues": {":k": KIND},
            "Select": "COUNT",
        }
        counted = 0
        while counted < at_most:
            page = self.table.query(**request)
            counted += int(page.get("Count", 0))
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return counted

    def get(self, schedule_id: str) -> Schedule:
        if not SCHEDULE_ID.fullmatch(schedule_id):
            raise ScheduleNotFound(schedule_id)
        item = self.table.get_item(Key={"schedule_id": schedule_id}, ConsistentRead=True).get("Item")
        if item is None:
            raise ScheduleNotFound(schedule_id)
        return _schedule_from(item)

    def delete(self, schedule_id: str) -> None:
        if not SCHEDULE_ID.fullmatch(schedule_id):
            raise ScheduleNotFound(schedule_id)
        try:
            self.table.delete_item(
                Key={"schedule_id": schedule_id}, ConditionExpression="attribute_exists(schedule_id)"
            )
        except ClientError as error:
            if aws.is_condition_failure(error):
                raise ScheduleNotFound(schedule_id) from error
            raise

    def list(
        self, task_id: str | None, limit: int, cursor: str | None, access: TaskAccess = EVERY_TASK
    ) -> tuple[list[Schedule], str | None]:
        """A page of schedules, newest first; one query, so a page limited to a key's tasks
        may come short (with a cursor when there are more)."""
        if task_id is not None and not access.allows(task_id):
            return [], None
        index, key_name, key_value = ("by_task", "task_id", task_id) if task_id else ("by_kind", "kind", KIND)
        request: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": "#k = :k",
            "ExpressionAttributeNames": {"#k": key_name},
            "ExpressionAttributeValues": {":k": key_value},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            before = cursors.decode(cursor, key_name, key_value, SCHEDULE_ID, cursors.filter_digest(access.patterns))
            request["KeyConditionExpression"] += " AND #id < :before"
            request["ExpressionAttributeNames"]["#id"] = "schedule_id"
            request["ExpressionAttributeValues"][":before"] = before
        if task_id is None and not access.everything:
            condition, names, values = access.condition()
            request["FilterExpression"] = condition
            request["ExpressionAttributeNames"].update(names)
            request["ExpressionAttributeValues"].update(values)
        page = self.table.query(**request)
        schedules = [_schedule_from(item) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        if not last:
            return schedules, None
        return schedules, cursors.encode(
            last["schedule_id"], key_name, key_value, cursors.filter_digest(access.patterns)
        )

    def claim_firing(self, schedule_id: str, moment: datetime, run_id: str) -> str | None:
        """Mark the schedule fired for `moment` with the id its run will have; answer that id.
        A repeated delivery of the same firing (EventBridge Scheduler delivers at least once)
        gets the id the first one chose, so that the run is made once, even if the first
        delivery died before making it; an older firing, or a schedule gone, gets None."""
        at = format_time(moment)
        try:
            self.table.update_item(
                Key={"schedule_id": schedule_id},
                UpdateExpression="SET fired_at = :t, firing_run_id = :run",
                ConditionExpression=(
                    "attribute_exists(schedule_id) AND (attribute_not_exists(fired_at) OR fired_at < :t)"
                ),
                ExpressionAttributeValues={":t": at, ":run": run_id},
            )
            return run_id
        except ClientError as error:
            if not aws.is_condition_failure(error):
                raise
        item = self.table.get_item(Key={"schedule_id": schedule_id}, ConsistentRead=True).get("Item") or {}
        if item.get("fired_at") == at and item.get("firing_run_id"):
            return str(item["firing_run_id"])
        return None

    def record_outcome(self, schedule_id: str, run_id: str | None, error: str | None) -> None:
        """The run a firing started (or why it started none)."""
        names = {"#run": "last_run_id", "#error": "last_error"}
        if run_id is not None:
            expression, values = "SET #run = :run REMOVE #error", {":run": run_id}
        else:
            expression, values = "SET #error = :error", {":error": (error or "")[:2000]}
        try:
            self.table.update_item(
                Key={"schedule_id": schedule_id},
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(schedule_id)",
                ExpressionAttributeNames={k: v for k, v in names.items() if k in expression},
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if not aws.is_condition_failure(error):  # deleted meanwhile
                raise


def _schedule_from(item: dict[str, Any]) -> Schedule:
    data = dict(item)
    data["arguments"] = json.loads(data.get("arguments") or "{}")
    return Schedule.model_validate(data)


# ---------------------------------------------------------------------------- EventBridge Scheduler


class Scheduler(Protocol):
    def put(self, schedule: Schedule, expression: Expression, new: bool) -> None: ...

    def delete(self, schedule_id: str) -> None: ...


@dataclass
class EventBridgeScheduler:
    """Each schedule as an EventBridge Scheduler schedule named after it, in the stack's group,
    targeting the schedule-target function with the schedule's id and the firing's time."""

    group: str
    target_arn: str
    role_arn: str
    dead_letter_arn: str = ""
    client: Any = None

    def _client(self) -> Any:
        return self.client or aws.client("scheduler")

    def put(self, schedule: Schedule, expression: Expression, new: bool) -> None:
        target: dict[str, Any] = {
            "Arn": self.target_arn,
            "RoleArn": self.role_arn,
            "Input": json.dumps(
                {
                    "schedule_id": schedule.schedule_id,
                    "scheduled_time": "<aws.scheduler.scheduled-time>",
                    "execution_id": "<aws.scheduler.execution-id>",
                    "attempt": "<aws.scheduler.attempt-number>",
                }
            ),
            "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600},
        }
        if self.dead_letter_arn:
            target["DeadLetterConfig"] = {"Arn": self.dead_letter_arn}
        request: dict[str, Any] = {
            "Name": schedule.schedule_id,
            "GroupName": self.group,
            "ScheduleExpression": expression.text,
            "ScheduleExpressionTimezone": schedule.timezone,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED" if schedule.enabled and not _spent(schedule, expression) else "DISABLED",
            "Target": target,
            "Description": (schedule.description or schedule.task_id)[:512],
        }
        if schedule.start_at is not None and expression.period is not None:
            request["StartDate"] = schedule.start_at
        if new:
            self._client().create_schedule(**request)
            return
        try:
            self._client().update_schedule(**request)
        except ClientError as error:  # gone from the group (deleted by hand): made again
            if error.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            self._client().create_schedule(**request)

    def delete(self, schedule_id: str) -> None:
        try:
            self._client().delete_schedule(Name=schedule_id, GroupName=self.group)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceNotFoundException":
                raise


def _spent(schedule: Schedule, expression: Expression) -> bool:
    """A one-off that has fired (or was run now) never fires again."""
    return expression.one_off and schedule.fired_at is not None


# ---------------------------------------------------------------------------- service


@dataclass
class FireEvent:
    """What the schedule target gets: the Input of a schedule made through the API (its id),
    or of one declared in template.yaml (the task, its arguments, a name)."""

    schedule_id: str | None
    scheduled_time: datetime
    task_id: str | None = None
    arguments: dict[str, Any] | None = None

    @classmethod
    def parse(cls, event: dict[str, Any], now: datetime) -> FireEvent:
        moment = now
        raw = event.get("scheduled_time")
        if isinstance(raw, str) and not raw.startswith("<"):
            with contextlib.suppress(ValueError):
                moment = datetime.fromisoformat(raw.replace("Z", "+00:00")).astimezone(UTC)
        arguments = event.get("arguments")
        return cls(
            schedule_id=event.get("schedule_id") if isinstance(event.get("schedule_id"), str) else None,
            scheduled_time=moment,
            task_id=event.get("task_id") if isinstance(event.get("task_id"), str) else None,
            arguments=arguments if isinstance(arguments, dict) else None,
        )


@dataclass
class Schedules:
    store: ScheduleStore
    scheduler: Scheduler
    runs: RunService

    @property
    def catalog(self) -> Catalog:
        return self.runs.catalog

    def create(self, request: ScheduleRequest, access: TaskAccess = EVERY_TASK) -> ScheduleView:
        most = self.runs.settings.max_schedules
        if self.store.count(most) >= most:
            raise InvalidInput(
                f"the stack holds {most} schedules, its most (TASKRUN_MAX_SCHEDULES); delete one first",
                [FieldError("body", f"at most {most} schedules", None)],
            )
        now = utcnow()
        schedule = Schedule(**request.model_dump(), schedule_id=_new_schedule_id(), created_at=now, updated_at=now)
        schedule, expression = self._checked(schedule, now, access=access)
        self.store.put(schedule, new=True)
        try:
            self.scheduler.put(schedule, expression, new=True)
        except Exception:
            self.store.delete(schedule.schedule_id)  # no record of a schedule that does not exist
            raise
        return self.view(schedule)

    def _visible(self, schedule_id: str, access: TaskAccess) -> Schedule:
        """A schedule the caller may see: one of a task outside their key's patterns is not found."""
        schedule = self.store.get(schedule_id)
        if not access.allows(schedule.task_id):
            raise ScheduleNotFound(schedule_id)
        return schedule

    def get(self, schedule_id: str, access: TaskAccess = EVERY_TASK) -> ScheduleView:
        return self.view(self._visible(schedule_id, access))

    def list(
        self, task_id: str | None, limit: int, cursor: str | None, access: TaskAccess = EVERY_TASK
    ) -> ScheduleList:
        schedules, next_cursor = self.store.list(task_id, limit, cursor, access)
        return ScheduleList(schedules=[self.view(schedule) for schedule in schedules], next_cursor=next_cursor)

    def update(self, schedule_id: str, patch: SchedulePatch, access: TaskAccess = EVERY_TASK) -> ScheduleView:
        current = self._visible(schedule_id, access)
        changes = patch.model_dump(exclude_unset=True)
        for name in ("task_id", "expression", "timezone", "enabled", "arguments", "overlap"):
            if name in changes and changes[name] is None:
                raise InvalidInput("the field cannot be null", [FieldError(f"body.{name}", "must not be null", None)])
        if changes.get("arguments"):
            task_id = changes.get("task_id") or current.task_id
            saved = current.arguments if task_id == current.task_id else {}  # another task's secrets stay its own
            changes["arguments"] = self._unmasked(task_id, changes["arguments"], saved, access)
        now = utcnow()
        schedule = current.model_copy(update={**changes, "updated_at": now})
        schedule, expression = self._checked(schedule, now, changed=set(changes), access=access)
        self.store.put(schedule)
        self.scheduler.put(schedule, expression, new=False)
        return self.view(schedule)

    def delete(self, schedule_id: str, access: TaskAccess = EVERY_TASK) -> None:
        self._visible(schedule_id, access)
        self.scheduler.delete(schedule_id)
        self.store.delete(schedule_id)

    def execute(self, schedule_id: str, request: ExecuteRequest, access: TaskAccess = EVERY_TASK) -> Run:
        """Run the schedule's task now, bypassing the schedule; a one-off run now does not
        fire again at its time."""
        schedule = self._visible(schedule_id, access)
        arguments = {**schedule.arguments, **(request.arguments or {})}
        if request.arguments:
            arguments = self._unmasked(schedule.task_id, arguments, schedule.arguments, access)
        run = self.runs.start(_run_request(schedule, arguments))
        self.store.record_outcome(schedule_id, run.run_id, None)
        expression = parse_expression(schedule.expression, schedule.timezone)
        if expression.one_off and self.store.claim_firing(schedule_id, utcnow(), run.run_id):
            fired = schedule.model_copy(update={"fired_at": utcnow()})
            self.scheduler.put(fired, expression, new=False)  # disabled: it has had its run
        return run

    def fire(self, event: FireEvent) -> Run | None:
        """A schedule's time came: start its run, once per firing; None when nothing starts."""
        if event.schedule_id is None or not SCHEDULE_ID.fullmatch(event.schedule_id):
            return self._fire_declared(event)
        try:
            schedule = self.store.get(event.schedule_id)
        except ScheduleNotFound:
            logger.info("schedule gone; nothing to run", extra={"schedule_id": event.schedule_id})
            return None
        if not schedule.enabled:
            return None
        if schedule.overlap is Overlap.SKIP and self._last_run_active(schedule):
            logger.info("last run still going; firing skipped", extra={"schedule_id": schedule.schedule_id})
            count("ScheduleFiringsSkipped")
            return None
        run_id = self.store.claim_firing(schedule.schedule_id, event.scheduled_time, new_run_id())
        if run_id is None:
            logger.info("an older firing; nothing to run", extra={"schedule_id": schedule.schedule_id})
            return None
        try:
            run = self.runs.start(_run_request(schedule, schedule.arguments, run_id))
        except RunConflict:
            logger.info("firing handled already", extra={"schedule_id": schedule.schedule_id, "run_id": run_id})
            return None
        except (InvalidInput, TaskNotFound) as error:
            self.store.record_outcome(schedule.schedule_id, None, str(error))
            logger.warning("scheduled run refused", extra={"schedule_id": schedule.schedule_id, "error": str(error)})
            return None
        self.store.record_outcome(schedule.schedule_id, run.run_id, None)
        return run

    def _fire_declared(self, event: FireEvent) -> Run | None:
        if event.task_id is None:
            raise ValueError("a schedule-target event names a schedule_id or a task_id")
        declared = event.schedule_id or ""
        name = declared if re.fullmatch(DECLARED_NAME_PATTERN, declared) else None
        return self.runs.start(
            RunRequest(
                task_id=event.task_id,
                arguments=event.arguments or {},
                triggered_by=TriggeredBy.SCHEDULE,
                schedule_id=name,
            )
        )

    def view(self, schedule: Schedule, now: datetime | None = None) -> ScheduleView:
        now = now or utcnow()
        expression = parse_expression(schedule.expression, schedule.timezone)
        last_run = self._last_run(schedule)
        spent = _spent(schedule, expression)
        starting = spent and schedule.last_run_id is None and schedule.last_error is None  # fired, run on its way
        if not schedule.enabled:
            state = ScheduleState.DISABLED
        elif starting or (last_run is not None and not last_run.status.is_done):
            state = ScheduleState.RUNNING
        elif schedule.last_error is not None or (last_run is not None and last_run.status is not RunStatus.SUCCEEDED):
            state = ScheduleState.ERROR
        elif spent:
            state = ScheduleState.DONE
        else:
            state = ScheduleState.SCHEDULED
        next_run_at = None
        if schedule.enabled and not spent:
            next_run_at = expression.next_after(now, rate_anchor(schedule, expression))
        fields = schedule.model_dump(include=set(ScheduleFields.model_fields))
        fields["arguments"] = self._shown_arguments(schedule)
        return ScheduleView(
            **fields,
            schedule_id=schedule.schedule_id,
            state=state,
            next_run_at=next_run_at,
            last_run=last_run,
            last_error=schedule.last_error,
            created_at=schedule.created_at,
            updated_at=schedule.updated_at,
        )

    def _shown_arguments(self, schedule: Schedule) -> dict[str, Any]:
        """The arguments as taskrun shows them: each secret masked by the task's parameters.
        Arguments that hold no secret are shown without the tasks' code; those of a task no
        longer in the catalog that held one (or may have) are all masked."""
        if not schedule.arguments or schedule.secret_arguments is False:
            return schedule.arguments
        try:
            definition = self.catalog.get(schedule.task_id)
        except TaskNotFound:
            return dict.fromkeys(schedule.arguments, MASK)
        return definition.masked(schedule.arguments)

    def _unmasked(
        self, task_id: str, arguments: dict[str, Any], saved: dict[str, Any], access: TaskAccess
    ) -> dict[str, Any]:
        """Arguments for a task with each secret a client sent back masked (as it read them)
        given its saved value, as a re-run keeps its first run's; a mask with none is 422."""
        try:
            definition = self.catalog.visible(task_id, access)
        except TaskNotFound:
            return arguments  # the check of the task refuses it, saying no more of it
        return definition.unmasked(arguments, saved)

    def _last_run(self, schedule: Schedule) -> LastRun | None:
        if schedule.last_run_id is None:
            return None
        try:
            run = self.runs.store.get(schedule.last_run_id)
        except RunNotFound:
            return None
        return LastRun(run_id=run.run_id, status=run.status, started_at=run.started_at, ended_at=run.ended_at)

    def _last_run_active(self, schedule: Schedule) -> bool:
        last = self._last_run(schedule)
        return last is not None and not last.status.is_done

    def _checked(
        self, schedule: Schedule, now: datetime, changed: set[str] | None = None, access: TaskAccess = EVERY_TASK
    ) -> tuple[Schedule, Expression]:
        """Check the task (one the caller may run: 404 for a new schedule, 422 at
        body.task_id for a changed one), its arguments, the expression and timezone; the
        schedule with its arguments as the task takes them."""
        try:
            if not access.allows(schedule.task_id):
                raise TaskNotFound(schedule.task_id)
            definition = self.catalog.get(schedule.task_id)
        except TaskNotFound:
            if changed is None:  # a new schedule of an unknown task: the task is not found, as for a run
                raise
            raise InvalidInput(
                f"no task named {schedule.task_id!r}",
                [FieldError("body.task_id", "no task of this id", schedule.task_id)],
            ) from None
        arguments = definition.choose_revision(None).validate(schedule.arguments, ("body", "arguments"))
        if len(json.dumps(arguments)) > MAX_ARGUMENTS_BYTES:
            raise InvalidInput(
                "the arguments are too large",
                [FieldError("body.arguments", f"at most {MAX_ARGUMENTS_BYTES} bytes of JSON", None)],
            )
        # an at() in the past is refused when it is set, not when an unrelated field changes
        checks_time = changed is None or bool({"expression", "timezone"} & changed)
        expression = parse_expression(schedule.expression, schedule.timezone, now if checks_time else None)
        if schedule.webhook_url is not None:
            check_target(schedule.webhook_url, self.runs.settings.webhook_allow_private)
        if changed is not None and {"expression", "timezone"} & changed and expression.one_off:
            schedule = schedule.model_copy(update={"fired_at": None})  # a new time: it may fire again
        secret = definition.masked(arguments) != arguments
        return schedule.model_copy(update={"arguments": arguments, "secret_arguments": secret}), expression


def _run_request(schedule: Schedule, arguments: dict[str, Any], run_id: str | None = None) -> RunRequest:
    """A run of the schedule's task, marked as the schedule's."""
    return RunRequest(
        task_id=schedule.task_id,
        arguments=arguments,
        webhook_url=schedule.webhook_url,
        triggered_by=TriggeredBy.SCHEDULE,
        schedule_id=schedule.schedule_id,
        run_id=run_id,
        tags=tuple(schedule.tags),
    )


def rate_anchor(schedule: Schedule, expression: Expression) -> datetime:
    """Where a rate schedule's firings are counted from."""
    if schedule.start_at is not None:
        return schedule.start_at
    return schedule.created_at + (expression.period or timedelta(0))


def _new_schedule_id() -> str:
    return "sch_" + new_run_id().removeprefix("run_")
