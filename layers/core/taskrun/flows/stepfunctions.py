"""Flows on Step Functions: starting, stopping and reading executions, and ending runs from
the execution status changes EventBridge reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field

from taskrun import aws
from taskrun.catalog.definitions import state_machine_name
from taskrun.errors import InvalidResult, RunNotFound
from taskrun.modelbase import Model
from taskrun.models import ErrorType, Run, RunError, RunStatus, UtcTime
from taskrun.results.bucket import ResultStore, check_against, referenced_key
from taskrun.runs.dispatch import DispatchFailed
from taskrun.runs.store import Ending, RunStore, end_once
from taskrun.telemetry import count

logger = Logger(child=True)

MAX_HISTORY_EVENTS = 25_000  # Step Functions keeps no more per execution
GONE_TOKEN_ERRORS = ("TaskTimedOut", "TaskDoesNotExist", "InvalidToken")
# What SendTaskSuccess and SendTaskFailure take at most (characters); local mode holds to them too
MAX_TASK_OUTPUT = 262_144
MAX_TASK_CAUSE = 32_768
MAX_TASK_ERROR = 256


class StepFunctions:
    """The Step Functions calls taskrun makes, over one lazily made client."""

    def __init__(self, state_machine_prefix: str, client: Any = None) -> None:
        self.state_machine_prefix = state_machine_prefix
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("stepfunctions")

    def state_machine_arn(self, task_id: str) -> str:
        return self.state_machine_prefix + state_machine_name(task_id)

    def execution_arn(self, task_id: str, run_id: str) -> str:
        return self.state_machine_arn(task_id).replace(":stateMachine:", ":execution:") + ":" + run_id

    def dispatch(self, run: Run) -> str:
        """Start the run's execution, named after the run (so a repeated start is harmless)."""
        try:
            response = self.client.start_execution(
                stateMachineArn=self.state_machine_arn(run.task_id), name=run.run_id, input=json.dumps(run.arguments)
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ExecutionAlreadyExists":
                return self.execution_arn(run.task_id, run.run_id)
            raise DispatchFailed(f"the flow's execution could not be started: {error}") from error
        except BotoCoreError as error:
            raise DispatchFailed(f"the flow's execution could not be started: {error}") from error
        return str(response["executionArn"])

    def stop(self, execution_arn: str, cause: str) -> None:
        try:
            self.client.stop_execution(executionArn=execution_arn, error="Cancelled", cause=cause)
        except ClientError as error:
            logger.warning("could not stop the execution", extra={"error": str(error)})

    def events(self, execution_arn: str) -> list[dict[str, Any]]:
        """The execution's whole history, oldest first."""
        events: list[dict[str, Any]] = []
        request: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        while len(events) < MAX_HISTORY_EVENTS:
            page = self.client.get_execution_history(**request)
            events.extend(page["events"])
            if not page.get("nextToken"):
                break
            request["nextToken"] = page["nextToken"]
        return events

    def release(self, task_token: str, output: Any = None, error: str | None = None, cause: str = "") -> bool:
        """Resume the state waiting on a task token: with `error` it fails, else it gets `output`.
        What Step Functions cannot take never leaves it waiting: an output over its limit fails
        the state with `ResultTooLarge`, and a cause or error too long is cut to fit.
        False when nothing waits on the token any more (stopped, timed out, unknown)."""
        text = json.dumps(output) if error is None else ""
        if len(text) > MAX_TASK_OUTPUT:
            error = "ResultTooLarge"
            cause = f"the result is {len(text)} characters of JSON; a task token takes at most {MAX_TASK_OUTPUT}"
        try:
            if error is not None:
                self.client.send_task_failure(
                    taskToken=task_token, error=_clip(error, MAX_TASK_ERROR), cause=_clip(cause, MAX_TASK_CAUSE)
                )
            else:
                self.client.send_task_success(taskToken=task_token, output=text)
        except ClientError as failure:
            if failure.response["Error"]["Code"] in GONE_TOKEN_ERRORS:
                return False
            raise
        return True

    def output(self, execution_arn: str) -> Any:
        described = self.client.describe_execution(executionArn=execution_arn)
        return json.loads(described["output"]) if described.get("output") else None


def _clip(text: str, limit: int) -> str:
    marker = " [cut]"
    return text if len(text) <= limit else text[: limit - len(marker)] + marker


class ExecutionStatusChange(Model):
    """`detail` of EventBridge's "Step Functions Execution Status Change"."""

    executionArn: str
    stateMachineArn: str
    name: str
    status: str
    startDate: int | None = None
    stopDate: int | None = None
    output: str | None = None
    error: str | None = None
    cause: str | None = None

    @classmethod
    def of_execution(cls, described: dict[str, Any]) -> ExecutionStatusChange:
        """The change an execution's DescribeExecution output stands for (what EventBridge
        would report when it ended)."""
        status = described["status"]
        return cls(
            executionArn=described["executionArn"],
            stateMachineArn=described["stateMachineArn"],
            name=described["name"],
            status=str(getattr(status, "value", status)),
            startDate=epoch_ms(described.get("startDate")),
            stopDate=epoch_ms(described.get("stopDate")),
            output=described.get("output"),
            error=described.get("error"),
            cause=described.get("cause"),
        )


def epoch_ms(moment: datetime | None) -> int | None:
    return int(moment.timestamp() * 1000) if isinstance(moment, datetime) else None


class FlowStep(Model):
    """One state a flow's execution entered, as GET /v1/runs/{run_id}/history lists it."""

    name: str
    type: str = Field(description="The state's type: Task, Map, Choice, Pass, Wait, Parallel, ...")
    status: str = Field(description="running, succeeded, failed, cancelled or timed_out")
    started_at: UtcTime
    ended_at: UtcTime | None = None
    attempts: int = Field(default=0, description="How many times a Task state called its resource.")
    output: Any = None
    error: str | None = None
    cause: str | None = None


STATUS_OF_EXECUTION = {
    "SUCCEEDED": RunStatus.SUCCEEDED,
    "FAILED": RunStatus.FAILED,
    "TIMED_OUT": RunStatus.TIMED_OUT,
    "ABORTED": RunStatus.CANCELLED,
}
FAILURE_EVENTS = ("TaskFailed", "LambdaFunctionFailed", "TaskTimedOut", "LambdaFunctionTimedOut")
END_OF_EXECUTION = {"ExecutionFailed": "failed", "ExecutionAborted": "cancelled", "ExecutionTimedOut": "timed_out"}


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def steps_of(events: list[dict[str, Any]]) -> list[FlowStep]:
    """Fold an execution history into steps, in the order the states were entered.

    Every event points to the one before it in its own line of work (`previousEventId`),
    so walking back from a failure or an exit finds the state it belongs to, also among
    the interleaved iterations of a Map."""
    by_id = {event["id"]: event for event in events}
    steps: dict[int, FlowStep] = {}

    def owner(event: dict[str, Any], name: str | None = None) -> FlowStep | None:
        """The step an event belongs to. An exit names its state: a Map's exit follows its
        last iteration's events, so the walk passes the iterations' steps to reach the Map."""
        seen: dict[str, Any] | None = event
        while seen is not None:
            step = steps.get(seen["id"]) if seen is not event else None
            if step is not None and (name is None or (step.name == name and step.status == "running")):
                return step
            seen = by_id.get(seen.get("previousEventId", 0))
        return None

    for event in events:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            steps[event["id"]] = FlowStep(
                name=event["stateEnteredEventDetails"]["name"],
                type=kind.removesuffix("StateEntered"),
                status="running",
                started_at=event["timestamp"],
            )
        elif kind.endswith("StateExited"):
            step = owner(event, event["stateExitedEventDetails"]["name"])
            if step is not None:
                # a step that exits with its last failure standing went on through a Catch
                step.status, step.ended_at = ("failed" if step.error else "succeeded"), event["timestamp"]
                step.output = _json(event["stateExitedEventDetails"].get("output"))
        elif kind in ("TaskSucceeded", "LambdaFunctionSucceeded"):
            step = owner(event)
            if step is not None:
                step.error = step.cause = None
        elif kind in ("TaskScheduled", "LambdaFunctionScheduled"):
            step = owner(event)
            if step is not None:
                step.attempts += 1
        elif kind in FAILURE_EVENTS:
            step = owner(event)
            failure: dict[str, Any] = next((v for k, v in event.items() if k.endswith("EventDetails")), {})
            if step is not None:
                step.error, step.cause = failure.get("error"), failure.get("cause")
        elif kind in END_OF_EXECUTION:
            for step in steps.values():
                if step.status == "running":
                    step.status, step.ended_at = END_OF_EXECUTION[kind], event["timestamp"]
    return list(steps.values())


def failed_step(steps: list[FlowStep]) -> FlowStep | None:
    """The step the execution failed in: the last one that ended failed with an error."""
    failed = [step for step in steps if step.status == "failed" and step.error]
    return failed[-1] if failed else None


def _cause_message(cause: str | None) -> str | None:
    parsed = _json(cause)
    if isinstance(parsed, dict) and parsed.get("errorMessage"):
        return str(parsed["errorMessage"])
    return cause


def _moment(epoch_ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC) if epoch_ms is not None else None


def end_flow_run(
    change: ExecutionStatusChange, store: RunStore, sfn: StepFunctions, results: ResultStore | None = None
) -> Run | None:
    """End the run of an execution that ended. Executions that are not runs are ignored,
    as is a repeated event (the run has ended already)."""
    status = STATUS_OF_EXECUTION.get(change.status)
    if status is None:
        return None
    try:
        run = store.get(change.name)
    except RunNotFound:
        logger.info("execution is not a run", extra={"execution": change.executionArn})
        return None
    ended_at = _moment(change.stopDate) or datetime.now(UTC)
    started_at = run.started_at or _moment(change.startDate)
    result = None
    error = None
    result_key = None
    if status is RunStatus.SUCCEEDED:
        result = _json(change.output) if change.output is not None else sfn.output(change.executionArn)
        result_key = referenced_key(result)  # the flow's output is a result kept in the bucket
        if result_key is not None:
            result = None
        if run.json_schema is not None:
            try:
                check_against(results.get(result_key) if result_key and results else result, run.json_schema)
            except InvalidResult as invalid:
                status, result, result_key = RunStatus.FAILED, None, None
                error = RunError(type=ErrorType.VALIDATION_ERROR, message=str(invalid))
    elif status is RunStatus.FAILED:
        step = failed_step(steps_of(sfn.events(change.executionArn)))
        message = f"{change.error}: {_cause_message(change.cause)}" if change.cause else str(change.error)
        if step is not None:
            message = f"step {step.name!r} failed: {message}"
        error = RunError(type=ErrorType.EXECUTION_ERROR, message=message, exception_type=change.error)
    elif status is RunStatus.TIMED_OUT:
        error = RunError(type=ErrorType.TIMEOUT, message="the flow's execution timed out")
    else:
        error = RunError(type=ErrorType.CANCELLED, message=_cause_message(change.cause) or "the execution was stopped")
    ending = Ending(status, ended_at, result, error, started_at=started_at, result_key=result_key)
    run, ended_here = end_once(store, run.run_id, ending)
    if not ended_here:
        logger.info("run had ended already", extra={"status": run.status})
    else:
        count(f"RunsEnded_{run.status.value}")
    return run
