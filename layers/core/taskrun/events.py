"""What the worker and the flows' functions are invoked with: a run handed over, a flow's step,
a failed asynchronous invocation, a start from a state machine."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from taskrun.ids import RunId, TaskId
from taskrun.modelbase import Model
from taskrun.models import TaskType


class WorkerEvent(Model):
    """What the dispatcher hands the worker: the run to execute. With `attempt`, the run is
    queued and its start time has come (the wake state machine, or the sweeper): that attempt
    starts unless the run was cancelled or expired meanwhile, or another delivery started it."""

    run_id: RunId
    attempt: int | None = Field(default=None, ge=1)


class StepRequest(Model):
    """What a flow's Task state sends the worker: run this script now and give back its result."""

    task_id: TaskId
    arguments: dict[str, Any] = Field(default_factory=dict)
    execution: str | None = Field(default=None, description="The calling execution, for the logs.")


class FailedInvocation(Model):
    """The record Lambda sends to the worker's on-failure destination when an invocation
    failed outside the task: a crash, running out of memory, the Lambda timeout, or an
    event too old to run."""

    class Context(Model):
        condition: str = Field(description="RetriesExhausted or EventAgeExceeded.")

    class Failure(Model):
        errorType: str | None = None
        errorMessage: str | None = None

    requestContext: Context
    requestPayload: WorkerEvent
    responsePayload: Failure | None = None


class StartFromStateMachine(Model):
    """What a state machine sends the run-task Lambda: run a catalog task. With `task_token`
    (from `.waitForTaskToken`) the token is released with the run's outcome; without it, a
    script's result comes back at once."""

    task_id: TaskId
    arguments: dict[str, Any] = Field(default_factory=dict)
    task_type: TaskType | None = None
    revision: str | None = None
    task_token: str | None = None
    execution: str | None = Field(default=None, description="`$$.Execution.Id` of the calling execution.")
