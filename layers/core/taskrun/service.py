"""The run service: the run lifecycle every entry point shares (API, compatible endpoint, schedules)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from taskrun.catalog import Catalog
from taskrun.dispatch import Dispatcher, DispatchFailed
from taskrun.errors import FieldError, InvalidInput, PayloadTooLarge, RunConflict
from taskrun.flows import FlowStep, StepFunctions, steps_of
from taskrun.ids import new_run_id
from taskrun.models import ErrorType, Run, RunError, RunStatus, TaskType, TriggeredBy, utcnow
from taskrun.settings import Settings
from taskrun.store import Ending, RunFilter, RunStore
from taskrun.telemetry import count

logger = Logger(child=True)

# A run is one DynamoDB item (400 KB at most): arguments and result share it.
MAX_ARGUMENTS_BYTES = 100_000
FIRST_POLL_SECONDS = 0.02
POLL_GROWTH = 1.5
LONGEST_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class RunRequest:
    """What starting a run needs, whoever asks for it."""

    task_id: str
    arguments: dict[str, Any] = field(default_factory=dict)
    task_type: TaskType | None = None
    revision: str | None = None
    webhook_url: str | None = None
    triggered_by: TriggeredBy = TriggeredBy.API
    schedule_id: str | None = None
    parent_run_id: str | None = None


@dataclass
class RunService:
    store: RunStore
    dispatcher: Dispatcher
    catalog: Catalog
    settings: Settings
    flows: StepFunctions | None = None
    clock: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep

    def start(self, request: RunRequest, wait_timeout: float | None = None) -> Run:
        """Validate, record the run, dispatch it; with a wait timeout, wait for it to end."""
        definition = self.catalog.get(request.task_id)
        if request.task_type is not None and request.task_type is not definition.task_type:
            raise InvalidInput(
                f"task {request.task_id!r} is a {definition.task_type}, not a {request.task_type}",
                [FieldError("body.task_type", f"must be {definition.task_type}", request.task_type)],
            )
        revision = definition.choose_revision(request.revision)
        arguments = revision.validate(request.arguments, ("body", "arguments"))
        size = len(json.dumps(arguments))
        if size > MAX_ARGUMENTS_BYTES:
            raise PayloadTooLarge(f"the arguments are {size} bytes of JSON; at most {MAX_ARGUMENTS_BYTES} are accepted")
        run = Run(
            run_id=new_run_id(),
            task_id=definition.task_id,
            task_type=definition.task_type,
            revision=revision.revision,
            arguments=arguments,
            webhook_url=request.webhook_url,
            triggered_by=request.triggered_by,
            schedule_id=request.schedule_id,
            parent_run_id=request.parent_run_id,
            timeout=definition.timeout,
            created_at=self.clock(),
        )
        self.store.create(run)
        logger.append_keys(run_id=run.run_id, task_id=run.task_id)
        try:
            execution_arn = self.dispatcher.dispatch(run)
        except DispatchFailed as error:
            logger.exception("dispatch failed")
            count("DispatchFailures")
            return self.store.finish(
                run.run_id,
                Ending(
                    status=RunStatus.FAILED,
                    ended_at=self.clock(),
                    error=RunError(type=ErrorType.DISPATCH_ERROR, message=str(error)),
                ),
            )
        logger.info("run started", extra={"revision": run.revision, "triggered_by": run.triggered_by})
        count("RunsStarted")
        if execution_arn is not None:
            run = self._mark_flow_running(run, execution_arn)
        if wait_timeout is not None:
            return self.wait(run.run_id, wait_timeout, current=run)
        return run

    def _mark_flow_running(self, run: Run, execution_arn: str) -> Run:
        """A flow is running once its execution started (unless it has already ended)."""
        try:
            return self.store.mark_running(run.run_id, self.clock(), execution_arn=execution_arn)
        except RunConflict:
            return self.store.get(run.run_id)

    def get(self, run_id: str, wait_timeout: float | None = None) -> Run:
        if wait_timeout is not None:
            return self.wait(run_id, wait_timeout)
        return self.store.get(run_id)

    def wait(self, run_id: str, timeout: float, current: Run | None = None) -> Run:
        """Poll the record with a short, growing interval until the run ends or the wait is over.

        The wait never exceeds `max_wait_seconds` (below the API Gateway integration timeout);
        when it is over the run goes on, and comes back as it stands.
        """
        deadline = time.monotonic() + min(timeout, self.settings.max_wait_seconds)
        interval = FIRST_POLL_SECONDS
        run = current or self.store.get(run_id)
        while not run.status.is_done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                logger.info("wait timed out", extra={"run_id": run_id, "status": run.status})
                count("WaitTimeouts")
                break
            self.sleep(min(interval, remaining))
            interval = min(interval * POLL_GROWTH, LONGEST_POLL_SECONDS)
            run = self.store.get(run_id)
        return run

    def history(self, run_id: str, limit: int, cursor: str | None) -> tuple[list[FlowStep], str | None]:
        """A flow run's steps in the order they were entered; a page starts at `cursor`."""
        run = self.store.get(run_id)
        if run.execution_arn is None or self.flows is None:
            return [], None
        steps = steps_of(self.flows.events(run.execution_arn))
        start = _offset(cursor)
        page = steps[start : start + limit]
        return page, (str(start + limit) if start + limit < len(steps) else None)

    def list(self, filters: RunFilter, limit: int, cursor: str | None) -> tuple[list[Run], str | None]:
        return self.store.list(filters, limit, cursor)

    def cancel(self, run_id: str) -> Run:
        """End a pending or running run as cancelled; an ended run answers RunConflict."""
        run = self.store.get(run_id)
        if run.execution_arn and not run.status.is_done and self.flows is not None:
            self.flows.stop(run.execution_arn, cause="cancelled by request")
        ended_at = self.clock()
        return self.store.finish(
            run_id,
            Ending(
                status=RunStatus.CANCELLED,
                ended_at=ended_at,
                error=RunError(type=ErrorType.CANCELLED, message="cancelled by request"),
                started_at=run.started_at,
            ),
        )


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit():
        raise InvalidInput("the cursor is not one this API gave out", [FieldError("query.cursor", "invalid", cursor)])
    return int(cursor)


def wait_seconds(wait: bool | None, wait_timeout: float | None, longest: float) -> float | None:
    """How long a request waits: `wait=true` alone waits the longest allowed; a `wait_timeout`
    alone implies waiting; `wait=false` never waits."""
    if wait is False or (wait is None and wait_timeout is None):
        return None
    return longest if wait_timeout is None else min(wait_timeout, longest)
