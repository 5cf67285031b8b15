"""The dispatcher: hands a pending run to whatever executes it."""

from __future__ import annotations

import json
from datetime import UTC, timedelta
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from taskrun import aws
from taskrun.events import FailedInvocation, WorkerEvent
from taskrun.models import Run, TaskType


class DispatchFailed(Exception):
    """The run could not be handed over; it never started."""


class Dispatcher(Protocol):
    def dispatch(self, run: Run) -> str | None:
        """Hand the run over; a flow's dispatcher answers the execution's ARN."""
        ...


class LambdaDispatcher:
    """Scripts go to the worker Lambda by asynchronous invoke (the worker's retries and
    on-failure settings live in template.yaml)."""

    def __init__(self, worker_function: str, client: Any = None) -> None:
        self._worker_function = worker_function
        self._client = client

    def dispatch(self, run: Run) -> str | None:
        client = self._client or aws.client("lambda")
        try:
            client.invoke(
                FunctionName=self._worker_function,
                InvocationType="Event",
                Payload=WorkerEvent(run_id=run.run_id).model_dump_json().encode(),
            )
        except (ClientError, BotoCoreError) as error:
            raise DispatchFailed(f"the worker could not be invoked: {error}") from error
        return None

    def dispatch_attempt(self, run_id: str, attempt: int) -> None:
        """Hand the worker a queued run's attempt whose start time has come (the wake's own
        invoke, made by the sweeper when that was lost)."""
        client = self._client or aws.client("lambda")
        try:
            client.invoke(
                FunctionName=self._worker_function,
                InvocationType="Event",
                Payload=WorkerEvent(run_id=run_id, attempt=attempt).model_dump_json().encode(),
            )
        except (ClientError, BotoCoreError) as error:
            raise DispatchFailed(f"the worker could not be invoked: {error}") from error

    def run_now(self, run: Run) -> Run | FailedInvocation.Failure:
        """Invoke the worker synchronously for the run and answer when it is done: the run as
        the worker left it when the invocation ran to its end (whatever the run's outcome),
        or the function's error as Lambda reports it. A call that fails before or while
        the worker runs (throttled, timed out) raises DispatchFailed; the run may then be
        handed over again, as the worker runs a run only once."""
        client = self._client or aws.waiting_client("lambda")
        try:
            answer = client.invoke(
                FunctionName=self._worker_function,
                InvocationType="RequestResponse",
                Payload=WorkerEvent(run_id=run.run_id).model_dump_json().encode(),
            )
        except (ClientError, BotoCoreError) as error:
            raise DispatchFailed(f"the worker could not be invoked: {error}") from error
        payload = answer["Payload"].read()
        if not answer.get("FunctionError"):
            try:
                return Run.model_validate_json(payload)
            except ValidationError as error:  # not a run: the worker and the API differ in version
                raise DispatchFailed(f"the worker answered something other than a run: {error}") from error
        try:
            return FailedInvocation.Failure.model_validate_json(payload or b"{}")
        except ValidationError:  # not Lambda's error shape: a failure all the same
            return FailedInvocation.Failure()


class Waker:
    """Queued runs wait for their start time in an execution of the wake state machine
    (statemachines/wake.asl.json: a Wait state, then an asynchronous invoke of the worker for
    that attempt), so that no Lambda runs while they wait. One execution per run and attempt,
    named after them: a second start of the same is the same execution."""

    def __init__(self, state_machine_arn: str, client: Any = None) -> None:
        self._state_machine_arn = state_machine_arn
        self._client = client

    def wake_at(self, run: Run) -> None:
        """Start the run's attempt `run.attempt` at `run.next_attempt_at`; DispatchFailed if
        the wait could not be started."""
        assert run.next_attempt_at is not None
        client = self._client or aws.client("stepfunctions")
        # Step Functions waits to the second: the start time rounded up, never early
        start_at = run.next_attempt_at.astimezone(UTC).replace(microsecond=0)
        if start_at < run.next_attempt_at:
            start_at += timedelta(seconds=1)
        payload = {"run_id": run.run_id, "attempt": run.attempt, "start_at": start_at.strftime("%Y-%m-%dT%H:%M:%SZ")}
        try:
            client.start_execution(
                stateMachineArn=self._state_machine_arn,
                name=f"{run.run_id}-{run.attempt}",
                input=json.dumps(payload),
            )
        except ClientError as error:
            if aws.error_code(error) == "ExecutionAlreadyExists":
                return
            raise DispatchFailed(f"the run's start could not be put off: {error}") from error
        except BotoCoreError as error:
            raise DispatchFailed(f"the run's start could not be put off: {error}") from error


class TaskDispatcher:
    """Scripts to the worker, flows to Step Functions."""

    def __init__(self, scripts: Dispatcher, flows: Dispatcher) -> None:
        self._by_type = {TaskType.SCRIPT: scripts, TaskType.FLOW: flows}

    def dispatch(self, run: Run) -> str | None:
        return self._by_type[run.task_type].dispatch(run)

    def run_now(self, run: Run) -> Run | FailedInvocation.Failure:
        """A script run, run by a synchronous invoke of the worker (LambdaDispatcher.run_now)."""
        scripts = self._by_type[TaskType.SCRIPT]
        if run.task_type is not TaskType.SCRIPT or not isinstance(scripts, LambdaDispatcher):
            raise DispatchFailed("only a script run goes to the worker synchronously")
        return scripts.run_now(run)
