"""The run service: the run lifecycle every entry point shares (API, compatible endpoint, schedules)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from taskrun.access.scopes import EVERY_TASK, TaskAccess
from taskrun.catalog.registry import Catalog
from taskrun.errors import (
    FieldError,
    InvalidInput,
    PayloadTooLarge,
    RunConflict,
    RunNotFound,
)
from taskrun.ids import new_run_id
from taskrun.models import (
    MAX_DELAY_SECONDS,
    ErrorType,
    Run,
    RunError,
    RunStatus,
    RunSummary,
    TaskType,
    TriggeredBy,
    format_time,
    utcnow,
)
from taskrun.requests import StartRunRequest
from taskrun.results.bucket import check_schema
from taskrun.results.files import FileStore, file_parameters
from taskrun.runs.cache import ResultCache, cache_key
from taskrun.runs.concurrency import Admission
from taskrun.runs.dispatch import Dispatcher, Waker
from taskrun.runs.idempotency import IdempotencyStore, OnceKey
from taskrun.runs.launch import Launcher
from taskrun.runs.listing import RunFilter
from taskrun.runs.store import Ending, RunStore, end_once, visible
from taskrun.settings import Settings
from taskrun.telemetry import count

if TYPE_CHECKING:
    from taskrun.flows.durable import FlowEngines
    from taskrun.flows.stepfunctions import FlowStep

logger = Logger(child=True)

# A run is one DynamoDB item (400 KB at most): arguments and result share it.
MAX_ARGUMENTS_BYTES = 100_000
# A page of history stops short of this much JSON (Lambda answers API Gateway with at most 6 MB)
MAX_PAGE_BYTES = 4_000_000
FIRST_POLL_SECONDS = 0.02
POLL_GROWTH = 1.5
LONGEST_POLL_SECONDS = 1.0
REPLAY_GRACE_SECONDS = 5.0  # how long a repeated request waits for the first one's run to be recorded
CURRENT_REVISION = "current"  # a re-run's revision chosen by the traffic weights
RUN_AT_SLACK_SECONDS = 60  # a run_at this far past starts now (clocks differ); further is refused


@dataclass(frozen=True)
class RunRequest:
    """What starting a run needs, whoever asks for it."""

    task_id: str
    arguments: dict[str, Any] = field(default_factory=dict)
    task_type: TaskType | None = None
    revision: str | None = None
    webhook_url: str | None = None
    json_schema: dict[str, Any] | None = None
    cache: bool = True  # False: run afresh even if the task's cache has a result
    triggered_by: TriggeredBy = TriggeredBy.API
    schedule_id: str | None = None
    parent_run_id: str | None = None
    parent_execution: str | None = None
    task_token: str | None = None
    run_id: str | None = None  # chosen beforehand, so that a repeated start makes one run (RunConflict)
    access: TaskAccess = EVERY_TASK  # the tasks the caller may run: another is not found
    tags: tuple[str, ...] = ()
    delay: float | None = None  # seconds from now before the run starts
    run_at: datetime | None = None  # when the run starts (delay or run_at, not both)
    ttl: float | None = None  # seconds from now: not started by then, the run ends expired
    rerun_of: str | None = None
    concurrency_key: str | None = None

    @classmethod
    def of(cls, body: StartRunRequest, access: TaskAccess) -> RunRequest:
        """What a start request over HTTP asks for."""
        return cls(
            task_id=body.task_id,
            arguments=body.arguments,
            task_type=body.task_type,
            revision=body.revision,
            webhook_url=body.webhook_url,
            json_schema=body.json_schema,
            cache=body.cache,
            access=access,
            tags=tuple(body.tags),
            delay=body.delay,
            run_at=body.run_at,
            ttl=body.ttl,
            concurrency_key=body.concurrency_key,
        )


@dataclass
class RunService:
    store: RunStore
    dispatcher: Dispatcher
    catalog: Catalog
    settings: Settings
    flows: FlowEngines | None = None
    waker: Waker | None = None  # where queued runs wait for their start time
    admission: Admission | None = None  # admits runs of limited tasks to their limits
    cache: ResultCache | None = None
    files: FileStore | None = None
    clock: Callable[[], datetime] = utcnow
    sleep: Callable[[float], None] = time.sleep

    def start(self, request: RunRequest, wait_timeout: float | None = None) -> Run:
        """Validate, record the run, dispatch it; with a wait timeout, wait for it to end."""
        return self._launch(self._prepare(request), wait_timeout, request.cache)

    def start_once(
        self, request: RunRequest, once: OnceKey, keys: IdempotencyStore, wait_timeout: float | None = None
    ) -> tuple[Run, bool]:
        """Start a run for an idempotency key, or answer the run the key started before
        (True): the same key with another body is IdempotencyConflict. Concurrent requests
        with one key start one run."""
        run = self._prepare(request)
        first = keys.claim(once, run.run_id, self.clock())
        if first is None:
            return self._launch(run, wait_timeout, request.cache), False
        return self._replay(run.model_copy(update={"run_id": first}), wait_timeout), True

    def _replay(self, run: Run, wait_timeout: float | None) -> Run:
        """The run a key started: wait for its record if the first request is still making it;
        if that request died before making it, make it now (the run id makes it once)."""
        deadline = time.monotonic() + REPLAY_GRACE_SECONDS
        while True:
            try:
                existing = self.store.get(run.run_id)
                break
            except RunNotFound:
                if time.monotonic() >= deadline:
                    try:
                        return self._launch(run, wait_timeout)
                    except RunConflict:
                        continue
                self.sleep(0.05)
        if wait_timeout is not None and not existing.status.is_done:
            return self.wait(existing.run_id, wait_timeout, current=existing)
        return existing

    def _prepare(self, request: RunRequest) -> Run:
        """The run a request asks for, validated, not yet recorded."""
        definition = self.catalog.visible(request.task_id, request.access)
        self.catalog.check_startable(request.task_id)
        if request.task_type is not None and request.task_type is not definition.task_type:
            raise InvalidInput(
                f"task {request.task_id!r} is a {definition.task_type}, not a {request.task_type}",
                [FieldError("body.task_type", f"must be {definition.task_type}", request.task_type)],
            )
        revision = definition.choose_revision(request.revision)
        arguments = revision.validate(request.arguments, ("body", "arguments"))
        for name in file_parameters(revision.arguments_model):
            if arguments.get(name) is not None:
                if self.files is None:
                    raise InvalidInput("this stack takes no files", [FieldError(f"body.arguments.{name}", "no files")])
                arguments[name] = self.files.resolve(arguments[name], f"body.arguments.{name}", self.clock())
        if request.webhook_url is not None:
            from taskrun.webhooks.send import check_target  # only a run with a webhook needs it (~3 ms)

            check_target(request.webhook_url, self.settings.webhook_allow_private)
        if request.json_schema is not None:
            check_schema(request.json_schema)
        size = len(json.dumps(arguments))
        if size > MAX_ARGUMENTS_BYTES:
            raise PayloadTooLarge(f"the arguments are {size} bytes of JSON; at most {MAX_ARGUMENTS_BYTES} are accepted")
        now = self.clock()
        start_at = _start_time(request, now)
        expires_at = None if request.ttl is None else now + timedelta(seconds=request.ttl)
        if expires_at is not None and start_at is not None and expires_at <= start_at:
            raise InvalidInput(
                "the run would expire before its start time",
                [FieldError("body.ttl", "must reach past the run's delay or run_at", request.ttl)],
            )
        if start_at is not None and self.waker is None:
            raise InvalidInput("this stack cannot put off a run", [FieldError("body.delay", "not available")])
        if request.concurrency_key is not None and definition.per_key is None:
            raise InvalidInput(
                f"task {definition.task_id!r} has no per-key concurrency limit for a concurrency_key to count against",
                [FieldError("body.concurrency_key", "the task has no per_key limit", request.concurrency_key)],
            )
        slots = definition.slots_for(request.concurrency_key) if definition.task_type is TaskType.SCRIPT else []
        if slots and self.admission is None:
            raise InvalidInput("this stack has no concurrency limits", [FieldError("body.task_id", "limited task")])
        run = Run(
            run_id=request.run_id or new_run_id(),
            task_id=definition.task_id,
            task_type=definition.task_type,
            revision=revision.revision,
            arguments=arguments,
            secret_arguments=revision.masked(arguments) != arguments,
            webhook_url=request.webhook_url,
            json_schema=request.json_schema,
            cache_key=cache_key(definition.task_id, revision.revision, arguments) if definition.cache_ttl else None,
            cache_ttl=definition.cache_ttl,
            triggered_by=request.triggered_by,
            schedule_id=request.schedule_id,
            parent_run_id=request.parent_run_id,
            parent_execution=request.parent_execution,
            task_token=request.task_token,
            timeout=definition.timeout,
            tags=list(dict.fromkeys(request.tags)),
            rerun_of=request.rerun_of,
            retry=definition.retry if definition.task_type is TaskType.SCRIPT else None,
            concurrency_key=request.concurrency_key,
            slots=slots,
            status=RunStatus.QUEUED if start_at is not None or slots else RunStatus.PENDING,
            waiting_for=slots[0].name if slots and start_at is None else None,
            next_attempt_at=start_at,
            expires_at=expires_at,
            created_at=now,
        )
        return run

    def _launch(self, run: Run, wait_timeout: float | None, from_cache: bool = True) -> Run:
        """Record the run, dispatch it (taskrun.runs.launch); with a wait timeout, wait for it to end."""
        run, wait_timeout = self._launcher().launch(run, wait_timeout, from_cache)
        if wait_timeout is not None:
            return self.wait(run.run_id, wait_timeout, current=run)
        return run

    def _launcher(self) -> Launcher:
        """How this service launches a run: with its store, dispatcher, waker, limits and cache."""
        return Launcher(
            store=self.store,
            dispatcher=self.dispatcher,
            settings=self.settings,
            waker=self.waker,
            admission=self.admission,
            cache=self.cache,
            clock=self.clock,
        )

    def dispatch_again(self, run: Run) -> Run:
        """Hand over again a pending run whose dispatch was lost (Launcher.dispatch_again)."""
        return self._launcher().dispatch_again(run)

    def get(self, run_id: str, wait_timeout: float | None = None, access: TaskAccess = EVERY_TASK) -> Run:
        run = visible(self.store, run_id, access)
        if wait_timeout is not None:
            return self.wait(run_id, wait_timeout, current=run)
        return run

    def wait(self, run_id: str, timeout: float, current: Run | None = None, capped: bool = True) -> Run:
        """Poll the record with a short, growing interval until the run ends or the wait is over.

        An HTTP wait (`capped`) never exceeds `max_wait_seconds`, below the API Gateway
        integration timeout; when the wait is over the run goes on, and comes back as it stands.
        """
        deadline = time.monotonic() + (min(timeout, self.settings.max_wait_seconds) if capped else timeout)
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

    def history(
        self, run_id: str, limit: int, cursor: str | None, access: TaskAccess = EVERY_TASK
    ) -> tuple[list[FlowStep], str | None]:
        """A flow run's steps in the order they were entered; a page starts at `cursor`."""
        run = visible(self.store, run_id, access)
        start = _offset(cursor)  # a cursor this API did not give is refused, a script run's too
        if run.execution_arn is None or self.flows is None:
            return [], None
        steps = self.flows.steps(run.execution_arn)
        page: list[FlowStep] = []
        size = 0
        for step in steps[start : start + limit]:
            size += len(step.model_dump_json())
            if page and size > MAX_PAGE_BYTES:
                break
            page.append(step)
        end = start + len(page)
        return page, (str(end) if end < len(steps) else None)

    def list(self, filters: RunFilter, limit: int, cursor: str | None) -> tuple[list[RunSummary], str | None]:
        return self.store.list(filters, limit, cursor)

    def rerun(
        self, run_id: str, revision: str | None, access: TaskAccess = EVERY_TASK, wait_timeout: float | None = None
    ) -> Run:
        """A new run of a run's task with its arguments, tags, webhook and json_schema: of the
        same revision, or `revision` ("current": chosen by the traffic weights, as a new run
        is). The new run names the first (`rerun_of`); the first lists its re-runs (`reruns`)."""
        first = visible(self.store, run_id, access)
        request = RunRequest(
            task_id=first.task_id,
            arguments=first.arguments,
            task_type=first.task_type,
            revision=None if revision == CURRENT_REVISION else revision or first.revision,
            webhook_url=first.webhook_url,
            json_schema=first.json_schema,
            cache=False,
            access=access,
            tags=tuple(first.tags),
            rerun_of=first.run_id,
        )
        run = self._launch(self._prepare(request), wait_timeout, from_cache=False)
        self.store.link_rerun(first.run_id, run.run_id)
        return run

    def cancel(self, run_id: str, access: TaskAccess = EVERY_TASK) -> Run:
        """End a pending or running run as cancelled; an ended run answers RunConflict."""
        run = visible(self.store, run_id, access)
        if run.execution_arn and not run.status.is_done and self.flows is not None:
            self.flows.stop(run.execution_arn, cause="cancelled by request")
        ending = Ending(
            status=RunStatus.CANCELLED,
            ended_at=self.clock(),
            error=RunError(type=ErrorType.CANCELLED, message="cancelled by request"),
            started_at=run.started_at,
        )
        ended, by_this_call = end_once(self.store, run_id, ending)
        if by_this_call:
            count("RunsEnded_cancelled")
        # stopping the execution may end the run first (its ABORTED event), which is this cancel too
        if by_this_call or (run.execution_arn and ended.status is RunStatus.CANCELLED and not run.status.is_done):
            return ended
        raise RunConflict(run_id, ended.status, f"run {run_id} is {ended.status.value}")


def _start_time(request: RunRequest, now: datetime) -> datetime | None:
    """When a run that is put off starts (None: now). `run_at` may be up to a minute past
    (clocks differ), and neither it nor a delay more than MAX_DELAY_SECONDS ahead."""
    if request.delay is not None and request.run_at is not None:
        raise InvalidInput(
            "give delay or run_at, not both",
            [FieldError("body.run_at", "not with delay", format_time(request.run_at))],
        )
    if request.delay:
        return now + timedelta(seconds=request.delay)
    if request.run_at is None:
        return None
    run_at = request.run_at if request.run_at.tzinfo else request.run_at.replace(tzinfo=UTC)
    if run_at < now - timedelta(seconds=RUN_AT_SLACK_SECONDS):
        raise InvalidInput(
            "run_at is in the past",
            [FieldError("body.run_at", f"must not be more than {RUN_AT_SLACK_SECONDS} s past", format_time(run_at))],
        )
    if run_at > now + timedelta(seconds=MAX_DELAY_SECONDS):
        raise InvalidInput(
            "run_at is too far ahead",
            [FieldError("body.run_at", "must be at most 30 days ahead", format_time(run_at))],
        )
    return run_at if run_at > now else None


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 6):
        raise InvalidInput("the cursor is not one this API gave out", [FieldError("query.cursor", "invalid", cursor)])
    return int(cursor)
