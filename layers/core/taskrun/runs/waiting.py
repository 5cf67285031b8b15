"""Waiting on a run from outside the run service: how long a request waits for its run
(`wait`, `wait_timeout`, counted from the request's arrival), and another state machine's
run of a task (RunTaskFunction), which waits for the run to end and answers its result, or
an error named as Step Functions reports it; the same errors fail a task token
(taskrun.runs.notify). The waiting itself is the run service's `wait`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskrun.errors import ResultTooLarge, TaskTimedOut
from taskrun.models import Run, RunStatus, TriggeredBy

if TYPE_CHECKING:  # a request's wait_seconds needs none of the run service's imports
    from taskrun.events import StartFromStateMachine
    from taskrun.runs.service import RunService

RESULT_MARGIN_SECONDS = 2.0  # a state machine's plain invoke answers this long before its Lambda times out
# Step Functions error names of runs that ended without an exception of their own
ERROR_NAMES = {RunStatus.TIMED_OUT: "TaskTimedOut", RunStatus.CANCELLED: "TaskCancelled"}


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
    from taskrun.runs.service import RunRequest

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
