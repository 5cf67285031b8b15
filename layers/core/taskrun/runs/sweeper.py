"""The deadline sweeper: a scheduled backstop that ends the runs nothing else will end.

Every other path ends a run by itself (the worker, its on-failure destination, the flow's
status-change event). When one of those is lost (an asynchronous event dropped or dead-
lettered, a worker killed before its write), the run would stay pending or running: the
sweeper finds active runs past their deadline and ends them with the reason. A short run
(one its request waits for, kept out of the `active` index: taskrun.runs.items) whose
request and worker were both lost is found by the time it was made, once it is past the
longest a short run lives (SHORT_LOST_SECONDS) and for SHORT_LOOKBACK_SECONDS after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from taskrun import aws
from taskrun.flows.durable import DurableFlows, durable_ending, is_durable
from taskrun.flows.stepfunctions import ExecutionStatusChange, StepFunctions, end_flow_run
from taskrun.models import ACTIVE_STATUSES, ErrorType, Run, RunError, RunStatus, RunSummary, TaskType, format_time
from taskrun.results.bucket import ResultStore
from taskrun.runs.concurrency import Admission
from taskrun.runs.dispatch import DispatchFailed, LambdaDispatcher
from taskrun.runs.listing import RunFilter
from taskrun.runs.store import Ending, RunStore, end_once
from taskrun.telemetry import count

logger = Logger(child=True)

GRACE_SECONDS = 60  # past a deadline, time for the ending already on its way to be written
LONGEST_SCRIPT_SECONDS = 900  # the worker's Lambda timeout: no script runs longer
# how long an asynchronous invocation of the worker may wait to start (template.yaml:
# WorkerFunction EventInvokeConfig.MaximumEventAgeInSeconds; a test keeps them in step)
DISPATCH_MAX_AGE_SECONDS = 3600
PAGE_SIZE = 100
# A short run not ended this long after it was made lost its request and its worker; the
# sweeper looks that far back and 7 minutes before (its period, template.yaml: every 5
# minutes, and 2 to spare for a late one): each run made is read in one or two sweeps.
SHORT_LOST_SECONDS = 120
SHORT_LOOKBACK_SECONDS = SHORT_LOST_SECONDS + 420
MAX_SHORT_RUNS_PER_SWEEP = 20_000  # runs made in the window read, oldest first; the rest wait for the next
MAX_RUNS_PER_SWEEP = 2_000  # the next sweep goes on where a long backlog left off


@dataclass
class Sweep:
    checked: int = 0
    ended: list[str] = field(default_factory=list)
    woken: list[str] = field(default_factory=list)  # queued runs whose wake was overdue
    admitted: list[str] = field(default_factory=list)  # runs waiting for room that a release missed


def sweep(
    store: RunStore,
    flows: StepFunctions,
    now: datetime,
    results: ResultStore | None = None,
    worker: LambdaDispatcher | None = None,
    admission: Admission | None = None,
    durable: DurableFlows | None = None,
) -> Sweep:
    """End every active run past its deadline, oldest first, and every run never started past
    its ttl; wake again (through `worker`) each queued run whose wake is overdue, and admit
    what each limit with waiting runs has room for (a release may have missed a new waiter)."""
    done = Sweep()
    limits: dict[str, None] = {}
    for status in ACTIVE_STATUSES:
        cursor: str | None = None
        while done.checked < MAX_RUNS_PER_SWEEP:
            runs, cursor = store.list(RunFilter(status=status), PAGE_SIZE, cursor)
            for run in runs:
                done.checked += 1
                ended = _end_if_overdue(store, flows, run, now, results, durable)
                if ended is not None:
                    done.ended.append(ended.run_id)
                elif _wake_overdue(run, now, worker):
                    done.woken.append(run.run_id)
                elif run.waiting_for is not None and now >= run.created_at + timedelta(seconds=GRACE_SECONDS):
                    limits[run.waiting_for] = None
            if cursor is None:
                break
    if done.ended:
        logger.warning("runs past their deadline ended", extra={"run_ids": done.ended[:50], "count": len(done.ended)})
        count("RunsSwept", len(done.ended))
    if admission is not None:
        for limit in limits:
            done.admitted += admission.admit(limit)
    if done.admitted:
        logger.warning("waiting runs admitted by the sweep", extra={"run_ids": done.admitted[:50]})
        count("RunsAdmittedBySweeper", len(done.admitted))
    if done.woken:
        logger.warning("queued runs woken again", extra={"run_ids": done.woken[:50], "count": len(done.woken)})
        count("RunsWokenBySweeper", len(done.woken))
    try:
        lost = _end_lost_short_runs(store, now, done)
    except Exception:  # the rest of the sweep stands; the next one looks again
        logger.exception("the short runs could not be swept")
    else:
        if lost:
            logger.warning("short runs whose request was lost ended", extra={"run_ids": lost[:50], "count": len(lost)})
            count("RunsSwept", len(lost))
    return done


def _wake_overdue(run: RunSummary, now: datetime, worker: LambdaDispatcher | None) -> bool:
    """A queued run still queued well past its start time lost its wake (an execution that
    failed, a wait not started): the worker is invoked for that attempt now."""
    if worker is None or run.status is not RunStatus.QUEUED or run.next_attempt_at is None:
        return False
    if now < run.next_attempt_at + timedelta(seconds=GRACE_SECONDS):
        return False
    try:
        worker.dispatch_attempt(run.run_id, run.attempt)
    except DispatchFailed:
        logger.exception("a queued run could not be woken; the next sweep tries again")
        return False
    return True


def _end_if_overdue(
    store: RunStore,
    flows: StepFunctions,
    run: RunSummary,
    now: datetime,
    results: ResultStore | None,
    durable: DurableFlows | None = None,
) -> Run | None:
    if run.started_at is None and run.expires_at is not None and run.expires_at <= now:
        return _end(store, run, expiry(run, now))
    if run.status is RunStatus.QUEUED:
        return None  # its wake starts it, or the sweep wakes it (_wake_overdue)
    if run.task_type is TaskType.FLOW and durable is not None and is_durable(run.execution_arn):
        return _end_durable_if_over(store, durable, run, now)
    if run.task_type is TaskType.FLOW:
        return _end_flow_if_over(store, flows, run, now, results)
    ending = _script_ending(run, now)
    if ending is None:
        return None
    return _end(store, run, ending)


def expiry(run: Run, now: datetime) -> Ending:
    """How a run never started past its `expires_at` ends."""
    message = f"the run did not start before its ttl ran out ({format_time(run.expires_at or now)})"
    return Ending.failed(now, ErrorType.EXPIRED, message)


def _end(store: RunStore, run: RunSummary, ending: Ending) -> Run | None:
    ended, ended_here = end_once(store, run.run_id, ending)
    if not ended_here:
        return None
    count(f"RunsEnded_{ended.status.value}")
    return ended


def _script_ending(run: RunSummary, now: datetime) -> Ending | None:
    limit = min(run.timeout or LONGEST_SCRIPT_SECONDS, LONGEST_SCRIPT_SECONDS)
    if run.status is RunStatus.RUNNING and run.started_at is not None:
        if now < run.started_at + timedelta(seconds=limit + GRACE_SECONDS):
            return None
        message = (
            f"no ending was recorded within the task's {limit} s timeout: the worker was lost "
            "(ended by the deadline sweeper)"
        )
        return Ending(RunStatus.TIMED_OUT, now, error=RunError(type=ErrorType.TIMEOUT, message=message))
    if now < run.created_at + timedelta(seconds=DISPATCH_MAX_AGE_SECONDS + limit + GRACE_SECONDS):
        return None
    message = "the run never started: its worker invocation was lost (ended by the deadline sweeper)"
    return Ending.failed(now, ErrorType.DISPATCH_ERROR, message)


def _end_lost_short_runs(store: RunStore, now: datetime, done: Sweep) -> list[str]:
    """End the short runs made SHORT_LOOKBACK_SECONDS to SHORT_LOST_SECONDS ago that have
    not ended (their request and worker both lost); answer their ids."""
    made_from = now - timedelta(seconds=SHORT_LOOKBACK_SECONDS)
    lost = store.unlisted_active(made_from, now - timedelta(seconds=SHORT_LOST_SECONDS), MAX_SHORT_RUNS_PER_SWEEP)
    ended_ids = []
    for run in lost:
        done.checked += 1
        ending = _short_ending(run, now)
        ended = _end(store, run, ending) if ending is not None else None
        if ended is not None:
            ended_ids.append(ended.run_id)
    done.ended += ended_ids
    return ended_ids


def _short_ending(run: RunSummary, now: datetime) -> Ending | None:
    """How a short run whose request and worker were lost ends: as a script past its
    deadline, or, never started, failed."""
    if run.status is RunStatus.PENDING:
        message = "the run never started: the request that started it was lost (ended by the deadline sweeper)"
        return Ending.failed(now, ErrorType.DISPATCH_ERROR, message)
    return _script_ending(run, now)


def _end_flow_if_over(
    store: RunStore, flows: StepFunctions, run: RunSummary, now: datetime, results: ResultStore | None
) -> Run | None:
    """A flow run ends with its execution: if the execution ended and its event was lost,
    end the run from the execution as the event would have; if it never started, fail it."""
    arn = run.execution_arn or flows.execution_arn(run.task_id, run.run_id)
    try:
        described = flows.client.describe_execution(executionArn=arn)
    except ClientError as error:
        if error.response["Error"]["Code"] != "ExecutionDoesNotExist":
            raise
        if now < run.created_at + timedelta(seconds=GRACE_SECONDS):
            return None  # its start may be on its way
        message = "the flow's execution never started (ended by the deadline sweeper)"
        ending = Ending.failed(now, ErrorType.DISPATCH_ERROR, message)
        return _end(store, run, ending)
    if described["status"] in ("RUNNING", "PENDING_REDRIVE"):
        return None
    change = ExecutionStatusChange.of_execution(described)
    ended = end_flow_run(change, store, flows, results)
    return ended if ended is not None and ended.status.is_done else None


def _end_durable_if_over(store: RunStore, durable: DurableFlows, run: RunSummary, now: datetime) -> Run | None:
    """A code-first flow's run ends with its execution: one that ended with its ending lost
    (an execution timed out or stopped never reaches the flow function) ends the run as it
    ended; one still running past the run's timeout is stopped, and the run ends timed_out."""
    assert run.execution_arn is not None
    try:
        described = durable.describe(run.execution_arn)
    except ClientError as error:
        if aws.error_code(error) not in ("ResourceNotFoundException", "404"):
            raise
        if now < run.created_at + timedelta(seconds=GRACE_SECONDS):
            return None
        return _end(store, run, Ending.failed(now, ErrorType.DISPATCH_ERROR, "the flow's execution is gone"))
    status = described.get("Status")
    if status == "RUNNING":
        started = run.started_at or run.created_at
        if run.timeout is None or now < started + timedelta(seconds=run.timeout + GRACE_SECONDS):
            return None
        durable.stop(run.execution_arn, f"the run's {run.timeout} s timeout passed")
        message = f"the flow ran past its {run.timeout} s timeout: its execution was stopped (by the deadline sweeper)"
        return _end(
            store, run, Ending(RunStatus.TIMED_OUT, now, error=RunError(type=ErrorType.TIMEOUT, message=message))
        )
    json_schema = store.get(run.run_id).json_schema if status == "SUCCEEDED" else None  # not in a summary
    ending = durable_ending(described, now, json_schema)
    return _end(store, run, ending) if ending is not None else None
