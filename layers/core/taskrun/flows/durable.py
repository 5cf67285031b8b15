"""Code-first flows on Lambda durable functions: a run's execution started on the flow
function (named after the run, so a repeated start is the same execution), stopped, and
read back as the run's history steps and waiting callbacks; a callback completed.

A code-first flow is a Python function the flow function runs under the durable execution
SDK (taskrun.flows.host). Its execution's operations (steps, waits, callbacks, child
contexts of a map or a parallel) are the run's steps, folded from the execution's history
events as Step Functions' states are folded from theirs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from taskrun import aws
from taskrun.catalog.definitions import CodeFlowRevision
from taskrun.catalog.registry import Catalog
from taskrun.errors import InvalidResult, TaskNotFound
from taskrun.flows.stepfunctions import FlowStep, StepFunctions
from taskrun.flows.stepfunctions import steps_of as sfn_steps_of
from taskrun.models import ErrorType, Run, RunError, RunStatus
from taskrun.results.bucket import check_against
from taskrun.runs.dispatch import DispatchFailed
from taskrun.runs.store import Ending

logger = Logger(child=True)

MAX_HISTORY_PAGES = 50  # of 1,000 events: a run's history past them is shown cut
MAX_RESULT_BYTES = 256 * 1024  # a durable execution's result, and so a code-first flow's
# what a history event's kind says of the operation (the part after Started/Succeeded/...)
STEP_TYPES = {
    "Step": "step",
    "Wait": "wait",
    "Callback": "callback",
    "ChainedInvoke": "invoke",
}
CONTEXT_TYPES = {
    "Map": "map",
    "MapIteration": "map_iteration",
    "Parallel": "parallel",
    "ParallelBranch": "parallel_branch",
    "WaitForCallback": "wait_for_callback",
    "RunInChildContext": "child",
}
ENDINGS = {"Succeeded": "succeeded", "Failed": "failed", "TimedOut": "timed_out", "Cancelled": "cancelled"}
ENDINGS["Stopped"] = "cancelled"


def failure_of(error: dict[str, Any] | None) -> tuple[str, str]:
    """An execution's or invocation's error (ErrorType, ErrorMessage): the exception's type,
    unqualified, and its message."""
    error = error or {}
    return str(error.get("ErrorType") or "Error").rsplit(".", 1)[-1], str(error.get("ErrorMessage") or "")


def result_ending(
    text: str | None, json_schema: dict[str, Any] | None, ended_at: datetime, started_at: datetime | None = None
) -> Ending:
    """How a run ends whose execution returned `text` (its JSON): succeeded with it, or
    failed when it is over MAX_RESULT_BYTES or unlike the run's json_schema."""
    text = text or "null"
    size = len(text.encode())
    if size > MAX_RESULT_BYTES:
        message = f"the flow's result is {size:,} bytes of JSON; at most {MAX_RESULT_BYTES:,}"
        return dataclasses.replace(Ending.failed(ended_at, ErrorType.EXECUTION_ERROR, message), started_at=started_at)
    try:
        result = json.loads(text)
    except ValueError:
        message = "the flow's result is not JSON"
        return dataclasses.replace(Ending.failed(ended_at, ErrorType.EXECUTION_ERROR, message), started_at=started_at)
    if json_schema is not None:
        try:
            check_against(result, json_schema)
        except InvalidResult as invalid:
            error = RunError(type=ErrorType.VALIDATION_ERROR, message=str(invalid))
            return Ending(RunStatus.FAILED, ended_at, None, error, started_at=started_at)
    return Ending(RunStatus.SUCCEEDED, ended_at, result, None, started_at=started_at)


def durable_ending(
    described: dict[str, Any], now: datetime, json_schema: dict[str, Any] | None = None
) -> Ending | None:
    """How a run ends whose execution ended as GetDurableExecution describes it (None while
    it runs): the ending the flow function would have written, when that was lost, its
    result held to the run's `json_schema` and to MAX_RESULT_BYTES as there."""
    status = described.get("Status")
    ended_at = described.get("EndTimestamp") or now
    error = described.get("Error") or {}
    if status == "SUCCEEDED":
        return result_ending(described.get("Result"), json_schema, ended_at)
    if status == "FAILED":
        kind, text = failure_of(error)
        message = f"{kind}: {text}".rstrip(": ")
        return Ending(
            RunStatus.FAILED,
            ended_at,
            error=RunError(type=ErrorType.EXECUTION_ERROR, message=message, exception_type=kind),
        )
    if status == "TIMED_OUT":
        message = "the flow's execution timed out (its function's DurableConfig ExecutionTimeout)"
        return Ending(RunStatus.TIMED_OUT, ended_at, error=RunError(type=ErrorType.TIMEOUT, message=message))
    if status == "STOPPED":
        message = str(error.get("ErrorMessage") or "the execution was stopped")
        return Ending(RunStatus.CANCELLED, ended_at, error=RunError(type=ErrorType.CANCELLED, message=message))
    return None


def is_durable(execution_arn: str | None) -> bool:
    """An execution of the flow function, rather than of a Step Functions state machine."""
    return bool(execution_arn) and ":states:" not in str(execution_arn)


def flow_input(run: Run) -> dict[str, Any]:
    """What the flow function's execution of a run is started with."""
    return {"run_id": run.run_id, "task_id": run.task_id, "revision": run.revision, "arguments": run.arguments}


class DurableFlows:
    """The Lambda calls taskrun makes for code-first flows, over one lazily made client."""

    def __init__(self, function_name: str, client: Any = None) -> None:
        self.function_name = function_name  # the flow function's alias: each execution keeps its version
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("lambda")

    def dispatch(self, run: Run) -> str:
        """Start the run's execution, asynchronously; its ARN."""
        try:
            answer = self.client.invoke(
                FunctionName=self.function_name,
                InvocationType="Event",
                DurableExecutionName=run.run_id,
                Payload=json.dumps(flow_input(run)).encode(),
            )
        except ClientError as error:
            if aws.error_code(error) == "DurableExecutionAlreadyStartedException":
                raise DispatchFailed(
                    f"an execution named {run.run_id} runs already with other arguments: {error}"
                ) from error
            raise DispatchFailed(f"the flow's execution could not be started: {error}") from error
        except BotoCoreError as error:
            raise DispatchFailed(f"the flow's execution could not be started: {error}") from error
        arn = answer.get("DurableExecutionArn")
        if not arn:
            raise DispatchFailed("the flow function started no durable execution (is DurableConfig set?)")
        return str(arn)

    def describe(self, execution_arn: str) -> dict[str, Any]:
        """GetDurableExecution: its Status, Result or Error, and times."""
        return dict(self.client.get_durable_execution(DurableExecutionArn=execution_arn))

    def stop(self, execution_arn: str, cause: str) -> None:
        """Stop the execution; one that has ended already is left as it is."""
        try:
            self.client.stop_durable_execution(
                DurableExecutionArn=execution_arn,
                Error={"ErrorType": "Cancelled", "ErrorMessage": cause[:1000]},
            )
        except ClientError as error:
            if aws.error_code(error) not in ("ResourceNotFoundException", "InvalidParameterValueException", "404"):
                raise

    def events(self, execution_arn: str) -> list[dict[str, Any]]:
        """The execution's history events, oldest first, with their data."""
        events: list[dict[str, Any]] = []
        request: dict[str, Any] = {"DurableExecutionArn": execution_arn, "IncludeExecutionData": True}
        for _ in range(MAX_HISTORY_PAGES):
            page = self.client.get_durable_execution_history(**request)
            events += page.get("Events", [])
            if not page.get("NextMarker"):
                break
            request["Marker"] = page["NextMarker"]
        return events

    def succeed_callback(self, callback_id: str, output: Any) -> bool:
        """Complete a waiting callback with an output; False if it waits no more."""
        return self._settle(
            "send_durable_execution_callback_success", CallbackId=callback_id, Result=json.dumps(output).encode()
        )

    def fail_callback(self, callback_id: str, error: str, cause: str) -> bool:
        """Fail a waiting callback; False if it waits no more."""
        return self._settle(
            "send_durable_execution_callback_failure",
            CallbackId=callback_id,
            Error={"ErrorType": error, "ErrorMessage": cause},
        )

    def _settle(self, call: str, **request: Any) -> bool:
        try:
            getattr(self.client, call)(**request)
        except ClientError as error:
            if aws.error_code(error) in ("ResourceNotFoundException", "InvalidParameterValueException", "404", "409"):
                return False
            raise
        return True


class FlowEngines:
    """A flow run's engine: a code-first flow's durable execution, an ASL flow's Step
    Functions execution; started, stopped and read alike."""

    def __init__(self, catalog: Catalog, sfn: StepFunctions, durable: DurableFlows) -> None:
        self.catalog = catalog
        self.sfn = sfn
        self.durable = durable

    def dispatch(self, run: Run) -> str:
        try:
            revision = self.catalog.get(run.task_id).revisions.get(run.revision)
        except TaskNotFound as missing:  # removed since the run was made (a restart's dispatch)
            raise DispatchFailed(f"the flow is no longer in the catalog: {missing}") from missing
        if isinstance(revision, CodeFlowRevision):
            return self.durable.dispatch(run)
        return self.sfn.dispatch(run)

    def steps(self, execution_arn: str) -> list[FlowStep]:
        """The execution's steps, in the order they started."""
        if is_durable(execution_arn):
            return steps_of(self.durable.events(execution_arn))
        return sfn_steps_of(self.sfn.events(execution_arn))

    def stop(self, execution_arn: str, cause: str) -> None:
        if is_durable(execution_arn):
            self.durable.stop(execution_arn, cause)
        else:
            self.sfn.stop(execution_arn, cause)


def _payload(details: dict[str, Any], field: str) -> Any:
    """A history event's result or error, unwrapped: a result is the SDK's serialized text
    (its typed envelope, `{"t": "m", "v": {...}}`, for anything but a plain value), shown as
    the JSON value the step returned."""
    wrapped = details.get(field)
    if not isinstance(wrapped, dict):
        return None
    value = wrapped.get("Payload")
    if field == "Result" and isinstance(value, str):
        return _decoded(value)
    return value


def _decoded(text: str) -> Any:
    """A result as the flow's code saw it, made JSON (a datetime as ISO text, a tuple as a list)."""
    from aws_durable_execution_sdk_python.serdes import deserialize
    from pydantic_core import to_jsonable_python

    try:
        return to_jsonable_python(deserialize(None, text, "", ""), fallback=str)
    except Exception:  # not the SDK's envelope
        return _json_or_text(text)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _kind(event: dict[str, Any]) -> tuple[str, str] | None:
    """(the operation's kind, the event's moment: Started, Succeeded, ...), or None for the
    execution's own events and the invocations'."""
    event_type = str(event.get("EventType", ""))
    for moment in ("Started", *ENDINGS):
        if event_type.endswith(moment):
            kind = event_type.removesuffix(moment)
            if kind in ("Execution", "Invocation"):
                return None
            return kind, moment
    return None


def steps_of(events: list[dict[str, Any]]) -> list[FlowStep]:
    """Fold an execution's history into its operations, in the order they started. A
    wait_for_callback is one step: the callback and the submitter step the SDK runs inside
    it are its own workings, and its output is the answer the callback was given."""
    steps: dict[str, FlowStep] = {}
    waits: set[str] = set()  # the ids of wait_for_callback contexts
    for event in events:
        found = _kind(event)
        if found is None or "Id" not in event or event.get("ParentId") in waits:
            continue
        kind, moment = found
        if kind == "Context" and event.get("SubType") == "WaitForCallback":
            waits.add(event["Id"])
        details: dict[str, Any] = next(
            (value for key, value in event.items() if key.endswith("Details") and isinstance(value, dict)), {}
        )
        moment_at: datetime = event["EventTimestamp"]
        step = steps.get(event["Id"])
        if moment == "Started":
            if step is None:
                sub_type = str(event.get("SubType") or "")
                step = FlowStep(
                    name=str(event.get("Name") or sub_type or kind),
                    type=CONTEXT_TYPES.get(sub_type, "context") if kind == "Context" else STEP_TYPES.get(kind, kind),
                    status="running",
                    started_at=moment_at,
                )
                if sub_type == "WaitForCondition":
                    step.type = "wait_for_condition"
                steps[event["Id"]] = step
            if kind == "Step":
                step.attempts += 1
            continue
        if step is None:
            continue
        retry = details.get("RetryDetails") or {}
        error = _payload(details, "Error") or {}
        if moment == "Failed" and retry.get("NextAttemptDelaySeconds"):
            step.error, step.cause = error.get("ErrorType"), error.get("ErrorMessage")  # it is tried again
            continue
        step.status, step.ended_at = ENDINGS[moment], moment_at
        if moment == "Succeeded":
            step.output, step.error, step.cause = _payload(details, "Result"), None, None
            if event["Id"] in waits and isinstance(step.output, str):
                step.output = _json_or_text(step.output)  # the answer's JSON text, as it was sent
        elif error:
            step.error, step.cause = error.get("ErrorType"), error.get("ErrorMessage")
    return list(steps.values())


@dataclass
class DurableCallback:
    """A callback an execution created: its id, the operation's name, how it stands."""

    callback_id: str
    name: str
    status: str  # waiting, succeeded, failed or expired
    created_at: datetime
    completed_at: datetime | None = None


CALLBACK_ENDINGS = {"CallbackSucceeded": "succeeded", "CallbackFailed": "failed", "CallbackTimedOut": "expired"}


def callbacks_of(events: list[dict[str, Any]]) -> list[DurableCallback]:
    """The callbacks of an execution, in the order they were created. A wait_for_callback's
    callback bears the wait's name."""
    found: dict[str, DurableCallback] = {}
    waits: dict[str, str] = {}  # wait_for_callback's contexts
    for event in events:
        event_type = event.get("EventType")
        if event_type == "ContextStarted" and event.get("SubType") == "WaitForCallback":
            waits[event["Id"]] = str(event.get("Name") or "")
        elif event_type == "CallbackStarted":
            callback_id = (event.get("CallbackStartedDetails") or {}).get("CallbackId")
            name = waits.get(str(event.get("ParentId"))) or str(event.get("Name") or "")
            if callback_id:
                found[event["Id"]] = DurableCallback(str(callback_id), name, "waiting", event["EventTimestamp"])
        elif event_type in CALLBACK_ENDINGS and event.get("Id") in found:
            callback = found[event["Id"]]
            callback.status, callback.completed_at = CALLBACK_ENDINGS[event_type], event["EventTimestamp"]
    return list(found.values())
