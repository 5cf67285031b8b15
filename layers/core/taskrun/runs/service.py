"""The run service: the run lifecycle every entry point shares (API, compatible endpoint, schedules)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from taskrun.access.scopes import EVERY_TASK, TaskAccess
from taskrun.catalog.context import DEFAULT_TIMEOUT
from taskrun.catalog.registry import Catalog
from taskrun.errors import (
    FieldError,
    InvalidInput,
    PayloadTooLarge,
    ResultTooLarge,
    RunConflict,
    RunNotFound,
    TaskNotFound,
    TaskTimedOut,
)
from taskrun.events import StartFromStateMachine
from taskrun.flows.stepfunctions import FlowStep, StepFunctions, steps_of
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
from taskrun.runs.dispatch import Dispatcher, DispatchFailed, Waker
from taskrun.runs.idempotency import IdempotencyStore, OnceKey
from taskrun.runs.store import Ending, RunFilter, RunStore, end_once, visible
from taskrun.settings import Settings
from taskrun.telemetry import count
from taskrun.webhooks.send import check_target

logger = Logger(child=True)

# A waited script run whose timeout fits the wait with this much to spare is run by a
# synchronous invoke of the worker: its end is known the moment it comes, without polling.
SYNC_MARGIN_SECONDS = 3.0
# A run is one DynamoDB item (400 KB at most): arguments and result share it.
MAX_ARGUMENTS_BYTES = 100_000
# A page of history stops short of this much JSON (Lambda answers API Gateway with at most 6 MB)
MAX_PAGE_BYTES = 4_000_000
FIRST_POLL_SECONDS = 0.02
POLL_GROWTH = 1.5
LONGEST_POLL_SECONDS = 1.0
# Step Functions error names of runs that ended without an exception of their own
ERROR_NAMES = {RunStatus.TIMED_OUT: "TaskTimedOut", RunStatus.CANCELLED: "TaskCancelled"}
RESULT_MARGIN_SECONDS = 2.0  # a state machine's plain invoke answers this long before its Lambda times out
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
    flows: StepFunctions | None = None
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
        if not request.access.allows(request.task_id):
            raise TaskNotFound(request.task_id)
        definition = self.catalog.get(request.task_id)
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
        """Record the run, dispatch it; with a wait timeout, wait for it to end. A run the
        task's cache answers (unless the request opted out, or the run is queued) is recorded
        ended, with the earlier run's result; a run that does run refreshes the cache when it
        succeeds."""
        cached = self._from_cache(run) if from_cache and run.status is not RunStatus.QUEUED else None
        if cached is not None:
            return cached
        self.store.create(run)
        logger.append_keys(run_id=run.run_id, task_id=run.task_id)
        if run.status is RunStatus.QUEUED and run.waiting_for is not None:
            return self._queue(run, wait_timeout)
        if run.status is RunStatus.QUEUED:
            return self._put_off(run, wait_timeout)
        began = time.monotonic()
        ran = self._run_now(run) if wait_timeout is not None and self._runs_within(run, wait_timeout) else None
        if ran is None:
            try:
                run = self._hand_over(run)
            except DispatchFailed as error:
                return self._dispatch_failed(run, error)
        logger.info("run started", extra={"revision": run.revision, "triggered_by": run.triggered_by})
        count("RunsStarted")
        if ran is not None and wait_timeout is not None:  # run while this request waited: the rest of the wait
            run, wait_timeout = ran, max(0.0, wait_timeout - (time.monotonic() - began))
        if wait_timeout is not None:
            return self.wait(run.run_id, wait_timeout, current=run)
        return run

    def dispatch_again(self, run: Run) -> Run:
        """Hand over again a pending run whose dispatch was lost (the local stack killed before
        its worker took it), as a new run is handed over. A repeat is harmless: the worker
        takes a run only from pending, and a flow's execution is named after its run."""
        logger.append_keys(run_id=run.run_id, task_id=run.task_id)
        try:
            run = self._hand_over(run)
        except DispatchFailed as error:
            return self._dispatch_failed(run, error)
        logger.info("run dispatched again")
        return run

    def _hand_over(self, run: Run) -> Run:
        """A script to the worker, a flow's execution started (the run then running);
        DispatchFailed if it could not be handed over."""
        execution_arn = self.dispatcher.dispatch(run)
        return run if execution_arn is None else self._mark_flow_running(run, execution_arn)

    def _dispatch_failed(self, run: Run, error: DispatchFailed) -> Run:
        """A run that could not be handed over never starts: it ends dispatch_error."""
        logger.exception("dispatch failed")
        count("DispatchFailures")
        return self.store.finish(run.run_id, Ending.failed(self.clock(), ErrorType.DISPATCH_ERROR, str(error)))

    def _queue(self, run: Run, wait_timeout: float | None) -> Run:
        """A run of a limited task waits for room (queued) and starts when its turn comes,
        which may be now."""
        assert self.admission is not None and run.waiting_for is not None
        self.admission.admit(run.waiting_for)
        logger.info("run queued for its limit", extra={"limit": run.waiting_for})
        count("RunsStarted")
        run = self.store.get(run.run_id)
        if wait_timeout is not None:
            return self.wait(run.run_id, wait_timeout, current=run)
        return run

    def _put_off(self, run: Run, wait_timeout: float | None) -> Run:
        """A run that starts later waits, queued, in the wake state machine."""
        assert self.waker is not None
        try:
            self.waker.wake_at(run)
        except DispatchFailed as error:
            logger.exception("the run's start could not be put off")
            count("DispatchFailures")
            return self.store.finish(run.run_id, Ending.failed(self.clock(), ErrorType.DISPATCH_ERROR, str(error)))
        logger.info("run queued", extra={"start_at": run.next_attempt_at, "triggered_by": run.triggered_by})
        count("RunsStarted")
        if wait_timeout is not None:
            return self.wait(run.run_id, wait_timeout, current=run)
        return run

    def _runs_within(self, run: Run, wait_timeout: float) -> bool:
        """A script whose timeout fits the wait (with a margin for the worker's start)."""
        budget = min(wait_timeout, self.settings.max_wait_seconds)
        timeout = run.timeout or DEFAULT_TIMEOUT
        return run.task_type is TaskType.SCRIPT and timeout + SYNC_MARGIN_SECONDS <= budget

    def _run_now(self, run: Run) -> Run | None:
        """Run a script in the worker while this request waits for it (a synchronous invoke),
        and answer it as it then stands: ended, unless another invocation had taken it. None
        when the worker could not be invoked so (throttled, say): the run is then handed over
        asynchronously, as any other. A failed invocation ends the run as the worker's
        on-failure destination would have."""
        run_now = getattr(self.dispatcher, "run_now", None)
        if run_now is None:
            return None
        try:
            answer = run_now(run)
        except DispatchFailed as error:
            logger.info(
                "the worker was not invoked synchronously; the run is handed over", extra={"reason": str(error)}
            )
            return None
        if isinstance(answer, Run):
            return answer
        from taskrun.runs.endings import end_crashed

        return end_crashed(self.store, run.run_id, answer, self.clock(), waker=self.waker)

    def _from_cache(self, run: Run) -> Run | None:
        if run.cache_key is None or self.cache is None:
            return None
        source_id = self.cache.find(run.cache_key, self.clock())
        if source_id is None:
            return None
        try:
            source = self.store.get(source_id)
        except RunNotFound:
            return None
        if source.status is not RunStatus.SUCCEEDED:
            return None
        now = self.clock()
        answer = run.model_copy(
            update={
                "status": RunStatus.SUCCEEDED,
                "result": source.result,
                "result_key": source.result_key,
                "cached": True,
                "cached_from": source.run_id,
                "cache_key": None,  # an answer from the cache does not become a cache entry itself
                "started_at": now,
                "ended_at": now,
                "duration_ms": 0,
            }
        )
        self.store.create(answer)
        logger.info("run answered from the cache", extra={"run_id": answer.run_id, "cached_from": source.run_id})
        count("RunsCached")
        return answer

    def _mark_flow_running(self, run: Run, execution_arn: str) -> Run:
        """A flow is running once its execution started (unless it has already ended)."""
        try:
            return self.store.mark_running(run.run_id, self.clock(), execution_arn=execution_arn)
        except RunConflict:
            return self.store.get(run.run_id)

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
        steps = steps_of(self.flows.events(run.execution_arn))
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


def wait_seconds(
    wait: bool | None, wait_timeout: float | None, longest: float, since_arrival: float = 0.0
) -> float | None:
    """How long a request waits: `wait=true` alone waits the longest allowed; a `wait_timeout`
    alone implies waiting; `wait=false` never waits. The longest is counted from the request's
    arrival at the gateway (`since_arrival` ago), so a cold start and the run's own writes
    cannot carry the answer past the gateway's timeout."""
    if wait is False or (wait is None and wait_timeout is None):
        return None
    left = max(0.0, longest - since_arrival)
    return left if wait_timeout is None else min(wait_timeout, left)


def run_for_state_machine(service: RunService, request: StartFromStateMachine, seconds_left: float) -> Any:
    """Run a catalog task for another state machine.

    With a task token the run starts and the token is released when it ends (see
    taskrun.runs.notify); the answer is the run's id. Without one, the answer is the script's
    result, or an error named after the script's exception (Step Functions' error name)."""
    execution_name = (request.execution or "").rpartition(":")[2]
    run = service.start(
        RunRequest(
            task_id=request.task_id,
            arguments=request.arguments,
            task_type=request.task_type,
            revision=request.revision,
            triggered_by=TriggeredBy.STEP_FUNCTIONS,
            parent_execution=request.execution,
            parent_run_id=execution_name if execution_name.startswith("run_") else None,
            task_token=request.task_token,
        )
    )
    if request.task_token is not None:
        return {"run_id": run.run_id, "status": run.status.value}
    run = service.wait(run.run_id, max(0.0, seconds_left - RESULT_MARGIN_SECONDS), current=run, capped=False)
    if run.status is RunStatus.SUCCEEDED and run.result_key is not None:
        raise stored_result_error(run)
    if run.status is RunStatus.SUCCEEDED:
        return run.result
    if not run.status.is_done:
        raise TaskTimedOut(f"run {run.run_id} did not end in time; it goes on (use .waitForTaskToken for long tasks)")
    raise step_error(run)


def stored_result_error(run: Run) -> ResultTooLarge:
    """What a state machine waiting on a run gets when its result is kept in the bucket."""
    return ResultTooLarge(
        f"run {run.run_id} succeeded with a result larger than Step Functions passes between states; "
        f"it is kept with the run (GET /v1/runs/{run.run_id} gives its result_url)"
    )


def step_error(run: Run) -> Exception:
    """The exception whose type name Step Functions reports as the error of a failed run."""
    name = (run.error.exception_type if run.error else None) or ERROR_NAMES.get(run.status, "TaskFailed")
    message = run.error.message if run.error else f"run {run.run_id} ended {run.status}"
    return type(name, (Exception,), {})(message)
