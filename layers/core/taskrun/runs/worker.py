"""The worker: executes one pending run of a script and records how it ended."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from taskrun import aws
from taskrun.catalog.context import DEFAULT_TIMEOUT
from taskrun.catalog.definitions import ScriptRevision
from taskrun.catalog.registry import Catalog
from taskrun.catalog.secrets import SecretStore, values_of
from taskrun.errors import (
    InvalidArguments,
    InvalidInput,
    InvalidResult,
    ResultTooLarge,
    RunConflict,
    SecretNotFound,
    TaskCancelled,
    TaskNotFound,
    TaskTimedOut,
)
from taskrun.events import FailedInvocation, StepRequest
from taskrun.models import ErrorType, Run, RunError, RunStatus, TaskType, utcnow
from taskrun.results.bucket import (
    MAX_STORED_RESULT_BYTES,
    ResultStore,
    check_against,
    reference_to,
    referenced_key,
)
from taskrun.results.runlogs import LiveRun, LogStore, part_name
from taskrun.runs.cache import ResultCache
from taskrun.runs.dispatch import Dispatcher, DispatchFailed, Waker
from taskrun.runs.endings import PATIENCE_SECONDS, end_crashed, expire, retry_later
from taskrun.runs.scripts import Call, Outcome, ScriptProcess
from taskrun.runs.store import Ending, RunStore, end_once
from taskrun.telemetry import count

logger = Logger(child=True)

SAFETY_MARGIN_SECONDS = 2.0
MAX_RESULT_BYTES = 280_000  # with at most 100 KB of arguments, the run stays below 400 KB
# A state's data is at most 256 KiB; lambda:invoke wraps the result with about 1 KB of metadata
MAX_STEP_RESULT_BYTES = 256 * 1024 - 4096


def _limit(timeout: int | None, seconds_left: float | None) -> float:
    """The task's own timeout, never past the Lambda's remaining time less a margin."""
    limit = float(timeout or DEFAULT_TIMEOUT)
    if seconds_left is not None:
        limit = max(0.0, min(limit, seconds_left - SAFETY_MARGIN_SECONDS))
    return limit


@dataclass
class Worker:
    store: RunStore
    catalog: Catalog
    clock: Callable[[], datetime] = utcnow
    scripts: ScriptProcess | None = None  # made on first use, so that it forks a loaded sandbox
    results: ResultStore | None = None  # where results too large for the record go
    cache: ResultCache | None = None  # where succeeded runs of cached tasks are remembered
    waker: Waker | None = None  # where a run waits for its next attempt
    flows: Dispatcher | None = None  # starts a queued flow run's execution when its time comes
    secrets: SecretStore | None = None  # where the tasks' declared secrets are read

    def _call(
        self,
        task_id: str,
        revision: str,
        arguments: dict[str, Any],
        context_id: str,
        limit: float,
        live: LiveRun,
        secrets: dict[str, str] | None = None,
    ) -> Outcome:
        """Run a script in the sandbox's child process, its logs and progress kept as it goes,
        stopped if the run it serves is cancelled meanwhile."""
        if self.scripts is None:
            self.scripts = ScriptProcess(self.catalog)
        call = Call(task_id, revision, arguments, context_id, time.monotonic() + limit, secrets=secrets or {})
        outcome = self.scripts.call(call, limit, live.watch())
        live.close(outcome.logs)
        return outcome

    def _live(self, run_id: str | None, part: str, attempt: int | None = None) -> LiveRun:
        """What is kept of a call while it runs, for the run it serves (None: none)."""
        logs = LogStore(self.results.bucket) if self.results is not None and run_id is not None else None
        return LiveRun(self.store, logs, run_id, part, attempt)

    def execute(self, run_id: str, seconds_left: float | None = None, attempt: int | None = None) -> Run:
        """Run the script of a pending run, or with `attempt`, that attempt of a queued run
        whose start time has come (a queued flow's execution is started instead). A run no
        longer so (a repeated delivery, a cancel that came first) is left as it is; one never
        started past its `expires_at` ends expired."""
        # A write throttled past the SDK's retries is made again while there is time: a
        # throttle must not lose a run's result, nor end a run whose code never started.
        deadline = None if seconds_left is None else time.monotonic() + seconds_left
        logger.append_keys(run_id=run_id)
        if attempt is not None:
            queued = self.store.get(run_id)
            if queued.task_type is TaskType.FLOW and self.flows is not None:
                return self._start_flow(run_id, attempt)
            if queued.slots:
                return self._wait_for_room(queued, attempt)
        # The claim is the conditional write itself (pending → running): no read before it.
        began = self.clock()
        try:
            run = aws.patiently(lambda: self.store.mark_running(run_id, began, attempt=attempt), PATIENCE_SECONDS)
        except RunConflict as conflict:
            return self._not_claimed(run_id, conflict)
        logger.append_keys(task_id=run.task_id, attempt=run.attempt)
        assert run.started_at is not None
        ending, retryable = self._run_script(
            run, _limit(run.timeout, None if deadline is None else deadline - time.monotonic())
        )
        patience = PATIENCE_SECONDS if deadline is None else deadline - time.monotonic() - 1.0
        if retryable and run.retries_left and self.waker is not None:
            again = retry_later(self.store, self.waker, run, began, ending)
            if again is not None:
                return again
        if ending.status is RunStatus.SUCCEEDED:
            # before the run is seen ended, so the next identical request finds the entry
            # (which answers only once the run it names has succeeded)
            self._remember(run, ending.ended_at)
        run, ended_here = aws.patiently(lambda: end_once(self.store, run_id, ending), patience)
        if ended_here:
            logger.info("run ended", extra={"status": run.status, "duration_ms": run.duration_ms})
            count(f"RunsEnded_{run.status.value}")
        else:
            logger.info("run ended elsewhere first", extra={"status": run.status})
        return run

    def _wait_for_room(self, run: Run, attempt: int) -> Run:
        """A queued run of a limited task whose start time came waits for room in its limit;
        the notifier admits it from the runs table's stream (taskrun.runs.notify)."""
        try:
            return self.store.wait_for_room(run.run_id, run.slots[0].name, attempt)
        except RunConflict as conflict:
            return self._not_claimed(run.run_id, conflict)

    def _not_claimed(self, run_id: str, conflict: RunConflict) -> Run:
        """A run the worker could not take: ended or taken elsewhere, an attempt already
        made, or never started and past its `expires_at` (then it ends expired here)."""
        run = self.store.get(run_id)
        now = self.clock()
        if run.status.is_done or run.started_at is not None or run.expires_at is None or run.expires_at > now:
            logger.info("run not taken (taken or ended elsewhere); nothing to do", extra={"status": conflict.status})
            return run
        return expire(self.store, run, now)

    def _start_flow(self, run_id: str, attempt: int) -> Run:
        """A queued flow run whose start time has come: its execution starts now."""
        assert self.flows is not None
        try:
            run = self.store.release(run_id, self.clock(), attempt)
        except RunConflict as conflict:
            return self._not_claimed(run_id, conflict)
        try:
            execution_arn = self.flows.dispatch(run)
        except DispatchFailed as error:
            logger.exception("the flow's execution could not be started")
            return end_once(self.store, run_id, Ending.failed(self.clock(), ErrorType.DISPATCH_ERROR, str(error)))[0]
        try:
            return self.store.mark_running(run_id, self.clock(), execution_arn=execution_arn)
        except RunConflict:  # it ended already (a quick flow, or a cancel)
            return self.store.get(run_id)

    def _remember(self, run: Run, ended_at: datetime) -> None:
        """A succeeded run of a cached task answers identical runs for its cache_ttl."""
        if self.cache is None or not (run.cache_key and run.cache_ttl):
            return
        expires_at = ended_at + timedelta(seconds=run.cache_ttl)
        cache, key = self.cache, run.cache_key
        try:
            aws.patiently(lambda: cache.remember(key, run.run_id, expires_at), PATIENCE_SECONDS)
        except Exception:  # the run has ended and stays so; only the cache misses it
            logger.exception("the result could not be cached")

    def run_step(self, step: StepRequest, seconds_left: float | None = None) -> Any:
        """Run a script as a step of a flow (a Task state's lambda:invoke) and return its result.

        A failure raises, so that Step Functions names the error after the exception's type
        and Retry and Catch can match it: the script's own exception, InvalidArguments, or
        TaskTimedOut."""
        logger.append_keys(task_id=step.task_id, execution=step.execution)
        definition = self.catalog.get(step.task_id)
        script = definition.latest
        if not isinstance(script, ScriptRevision):
            raise InvalidArguments(f"task {step.task_id!r} is a flow; a step runs a script")
        given = {name: self._dereferenced(value) for name, value in step.arguments.items()}
        try:
            arguments = script.validate(given, ("arguments",))
        except InvalidInput as invalid:
            raise InvalidArguments(invalid.summary()) from invalid
        limit = _limit(definition.timeout, seconds_left)
        execution = (step.execution or "").rpartition(":")[2]
        # a flow run's execution is named after the run: a cancel of the run stops the step too
        watched = execution if execution.startswith("run_") else None
        secrets = self._secrets_of(script)  # a missing one raises SecretNotFound, the step's error
        live = self._live(watched, part_name(time.time_ns(), step.task_id))
        outcome = self._call(step.task_id, script.revision, arguments, step.execution or "", limit, live, secrets)
        if outcome.cancelled:
            raise TaskCancelled(f"run {execution} was cancelled while its step {step.task_id!r} ran")
        if outcome.timed_out:
            raise TaskTimedOut(f"task {step.task_id!r} did not finish within {limit:g} s")
        if outcome.error is not None:
            raise outcome.error
        data = json.dumps(outcome.result, separators=(",", ":")).encode()
        if len(data) <= MAX_STEP_RESULT_BYTES:
            return outcome.result
        if self.results is None or len(data) > MAX_STORED_RESULT_BYTES:
            most = MAX_STORED_RESULT_BYTES if self.results is not None else MAX_STEP_RESULT_BYTES
            raise ResultTooLarge(
                f"task {step.task_id!r} returned {len(data):,} bytes of JSON; a flow step may return at most {most:,}"
            )
        # Step Functions passes 256 KiB between states: the result goes to the results bucket
        # and the state gets a reference, which a later step's argument or the flow's output
        # may carry (the worker reads it back for a step; the run shows it as its result_url)
        key = self._keep(f"{execution or 'step'}/{uuid.uuid4().hex}", data)
        return reference_to(key, len(data))

    def _keep(self, name: str, data: bytes) -> str:
        """Put a result too large to pass on into the results bucket; its key."""
        results = self.results
        assert results is not None
        key = aws.patiently(lambda: results.put(name, data), PATIENCE_SECONDS)
        logger.info("result kept in the results bucket", extra={"bytes": len(data), "key": key})
        return key

    def _dereferenced(self, value: Any) -> Any:
        """A step argument that is a reference to a stored result, read back; else as it is."""
        key = referenced_key(value)
        if key is None or self.results is None:
            return value
        return self.results.get(key)

    def record_crash(self, failure: FailedInvocation) -> Run:
        """End a run whose worker invocation failed outside the task, so it never stays
        pending or running: a Lambda timeout ends it timed_out, anything else failed."""
        detail = failure.responsePayload or FailedInvocation.Failure()
        too_late = failure.requestContext.condition == "EventAgeExceeded"
        return end_crashed(self.store, failure.requestPayload.run_id, detail, self.clock(), too_late, self.waker)

    def _run_script(self, run: Run, limit: float) -> tuple[Ending, bool]:
        """How the run's attempt ended, and whether it may be tried again (it raised an
        exception not marked final, its process ended, or it timed out)."""
        assert run.started_at is not None
        usage: dict[str, float] = {}

        def ending(status: RunStatus, result: Any = None, error: RunError | None = None) -> Ending:
            return Ending(status, self.clock(), result, error, usage, run.started_at)

        try:
            script = self.catalog.get(run.task_id).revisions[run.revision]
        except (TaskNotFound, KeyError):
            script = None
        if not isinstance(script, ScriptRevision):
            message = f"task {run.task_id!r} revision {run.revision!r} is not a script deployed on the worker"
            return ending(RunStatus.FAILED, error=RunError(type=ErrorType.NOT_FOUND, message=message)), False

        try:
            secrets = self._secrets_of(script)
        except SecretNotFound as missing:
            logger.info("a secret of the task is not set; the task was not started", extra={"reason": str(missing)})
            error = RunError(type=ErrorType.EXECUTION_ERROR, message=str(missing), exception_type="SecretNotFound")
            return ending(RunStatus.FAILED, error=error), False
        # a retried run keeps each attempt's logs apart, in the order they were made
        part = part_name(time.time_ns(), f"attempt-{run.attempt}") if run.retry else ""
        live = self._live(run.run_id, part, run.attempt)
        outcome = self._call(run.task_id, run.revision, run.arguments, run.run_id, limit, live, secrets)
        usage.update(outcome.usage)
        if outcome.cancelled:
            logger.info("run cancelled while its task ran; its process was stopped")
            message = "cancelled by request"
            return ending(RunStatus.CANCELLED, error=RunError(type=ErrorType.CANCELLED, message=message)), False
        if outcome.timed_out:
            logger.warning("task timed out; its process was stopped", extra={"timeout": limit})
            message = f"the task did not finish within {limit:g} s"
            return ending(RunStatus.TIMED_OUT, error=RunError(type=ErrorType.TIMEOUT, message=message)), True
        if isinstance(outcome.error, InvalidResult):
            logger.info("task result is not valid", extra={"reason": str(outcome.error)})
            invalid = RunError(type=ErrorType.VALIDATION_ERROR, message=str(outcome.error))
            return ending(RunStatus.FAILED, error=invalid), False
        if outcome.error is not None:
            exception = outcome.error
            logger.info("task raised", extra={"exception_type": type(exception).__name__})
            raised = RunError(
                type=ErrorType.EXECUTION_ERROR,
                message=str(exception) or type(exception).__name__,
                exception_type=type(exception).__name__,
                frames=outcome.frames or None,
            )
            return ending(RunStatus.FAILED, error=raised), not outcome.final
        return self._succeeded(run, outcome, ending), False

    def _secrets_of(self, script: ScriptRevision) -> dict[str, str]:
        """The values of the secrets the script declares; SecretNotFound names one not set."""
        return values_of(self.secrets, script.secrets)

    def _succeeded(self, run: Run, outcome: Outcome, ending: Callable[..., Ending]) -> Ending:
        """The ending of a script that returned: its result kept (in the record or the
        bucket), unless too large or unlike the run's json_schema."""
        data = json.dumps(outcome.result, separators=(",", ":")).encode()
        if len(data) > MAX_RESULT_BYTES and (self.results is None or len(data) > MAX_STORED_RESULT_BYTES):
            most = MAX_STORED_RESULT_BYTES if self.results is not None else MAX_RESULT_BYTES
            message = f"the result is {len(data):,} bytes of JSON; at most {most:,} are kept"
            return ending(RunStatus.FAILED, error=RunError(type=ErrorType.EXECUTION_ERROR, message=message))
        if run.json_schema is not None:
            try:
                check_against(outcome.result, run.json_schema)
            except InvalidResult as invalid:
                logger.info("task result breaks the run's json_schema", extra={"reason": str(invalid)})
                return ending(RunStatus.FAILED, error=RunError(type=ErrorType.VALIDATION_ERROR, message=str(invalid)))
        if len(data) > MAX_RESULT_BYTES:
            key = self._keep(run.run_id, data)
            return Ending(RunStatus.SUCCEEDED, self.clock(), None, None, outcome.usage, run.started_at, result_key=key)
        return ending(RunStatus.SUCCEEDED, result=outcome.result)
