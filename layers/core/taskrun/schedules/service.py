"""The schedules service: make, read, change, delete and run schedules now, and fire them,
through the run service, once per time."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from taskrun.access.scopes import EVERY_TASK, TaskAccess
from taskrun.catalog.masking import MASK
from taskrun.catalog.registry import Catalog
from taskrun.errors import FieldError, InvalidInput, RunConflict, RunNotFound, ScheduleNotFound, TaskNotFound
from taskrun.ids import new_run_id
from taskrun.models import Run, RunStatus, TriggeredBy, utcnow
from taskrun.runs.service import MAX_ARGUMENTS_BYTES, RunRequest, RunService
from taskrun.schedules.eventbridge import Scheduler
from taskrun.schedules.expressions import Expression, parse_expression
from taskrun.schedules.models import (
    DECLARED_NAME_PATTERN,
    SCHEDULE_ID,
    ExecuteRequest,
    LastRun,
    Overlap,
    Schedule,
    ScheduleFields,
    ScheduleList,
    SchedulePatch,
    ScheduleRequest,
    ScheduleState,
    ScheduleView,
    is_spent,
)
from taskrun.schedules.store import ScheduleStore
from taskrun.telemetry import count

logger = Logger(child=True)


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
        spent = is_spent(schedule, expression)
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
            from taskrun.webhooks.send import check_target  # only a schedule with a webhook needs it

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
