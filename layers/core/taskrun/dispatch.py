"""The dispatcher: hands a pending run to whatever executes it."""

from __future__ import annotations

from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from taskrun import aws
from taskrun.models import FailedInvocation, Run, TaskType, WorkerEvent


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
