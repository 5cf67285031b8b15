"""How a run ends off the worker's own path: its invocation crashed (the on-failure
destination's record), a failed attempt put back to wait for its retry, or a run not
started within its ttl."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from aws_lambda_powertools import Logger

from taskrun import aws
from taskrun.errors import (
    RunConflict,
)
from taskrun.events import FailedInvocation
from taskrun.models import ErrorType, Run, RunAttempt, RunAttemptError, RunError, RunStatus
from taskrun.runs.dispatch import DispatchFailed, Waker
from taskrun.runs.store import Ending, RunStore, end_once
from taskrun.runs.sweeper import expiry
from taskrun.telemetry import count

logger = Logger(child=True)

PATIENCE_SECONDS = 30.0  # how long a throttled write of a run is tried again, at most


def end_crashed(
    store: RunStore,
    run_id: str,
    detail: FailedInvocation.Failure,
    now: datetime,
    too_late: bool = False,
    waker: Waker | None = None,
) -> Run:
    """End a run whose worker invocation failed outside the task (the function's error as
    Lambda reports it), unless it has ended already: a Lambda timeout ends it timed_out,
    anything else failed; a running run with retries left is tried again instead (with a
    `waker`). Used by the worker's on-failure destination and by a waiting request that
    invoked the worker itself."""
    logger.append_keys(run_id=run_id)
    message = detail.errorMessage or detail.errorType or "the worker invocation failed"
    if too_late:
        status, error_type = RunStatus.FAILED, ErrorType.DISPATCH_ERROR
        message = "the worker was not free to start the run in time"
    elif detail.errorType == "Sandbox.Timedout" or "Task timed out" in message:
        status, error_type = RunStatus.TIMED_OUT, ErrorType.TIMEOUT
    else:
        status, error_type = RunStatus.FAILED, ErrorType.EXECUTION_ERROR
        message = f"the worker failed: {message}"
    run = store.get(run_id)
    if run.status is RunStatus.QUEUED:
        # Either the invocation that died had put the run back for its next attempt but not
        # yet started that attempt's wait, or it was a wake, dead before it took the run.
        # The wait is started (again): one execution per run and attempt, so a wait already
        # started is not doubled; a wake that died is left to the sweeper (taskrun.runs.sweeper).
        logger.warning("an invocation for a queued run failed; its wait is made sure of", extra={"reason": message})
        if waker is not None and run.next_attempt_at is not None:
            try:
                waker.wake_at(run)
            except DispatchFailed:
                logger.exception("the run's wait could not be started; the sweeper wakes it")
        return run
    ending = Ending(status, now, error=RunError(type=error_type, message=message), started_at=run.started_at)
    if waker is not None and not too_late and run.status is RunStatus.RUNNING and run.retries_left:
        began = run.attempts[-1].ended_at if run.attempts else run.started_at or now  # the attempt's start is not kept
        again = retry_later(store, waker, run, began, ending)
        if again is not None:
            return again
    run, ended_here = end_once(store, run_id, ending)
    if not ended_here:
        logger.info("run had ended already", extra={"status": run.status})
        return run
    logger.warning("worker invocation failed; run ended", extra={"status": status, "reason": message})
    count(f"RunsEnded_{run.status.value}")
    return run


def retry_later(store: RunStore, waker: Waker, run: Run, began: datetime, ending: Ending) -> Run | None:
    """Put a run whose attempt failed back in the queue for its next attempt, after the
    backoff, and start the wait (the wake state machine). None when the run was ended
    meanwhile (a cancel): it stays so. A wait that could not be started leaves the run
    queued; the sweeper wakes it (taskrun.runs.sweeper)."""
    assert run.retry is not None
    error = ending.error
    attempts = [
        *run.attempts,
        RunAttempt(
            attempt=run.attempt,
            status=ending.status,
            started_at=began,
            ended_at=ending.ended_at,
            error=None
            if error is None
            else RunAttemptError(type=error.type, message=error.message, exception_type=error.exception_type),
        ),
    ]
    pause = run.retry.backoff.delay(run.attempt, random.random())
    try:
        queued = aws.patiently(
            lambda: store.requeue(run.run_id, attempts, ending.ended_at + timedelta(seconds=pause)), PATIENCE_SECONDS
        )
    except RunConflict:
        return None
    logger.info(
        "attempt failed; the run is tried again",
        extra={"attempt": run.attempt, "status": ending.status, "next_attempt_at": queued.next_attempt_at},
    )
    count("RunsRetried")
    try:
        waker.wake_at(queued)
    except DispatchFailed:
        logger.exception("the retry's wait could not be started; the sweeper wakes the run")
    return queued


def expire(store: RunStore, run: Run, now: datetime) -> Run:
    """End a run never started past its `expires_at` (unless something ended it first)."""
    ended, ended_here = end_once(store, run.run_id, expiry(run, now))
    if ended_here:
        logger.info("run expired before it started")
        count("RunsEnded_expired")
    return ended
