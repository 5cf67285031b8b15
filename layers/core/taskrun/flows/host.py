"""The flow function: it runs a code-first flow under the durable execution SDK, choosing
the flow by the task id its execution was started with (as the worker chooses a script),
and ends the run as the execution ends, by one conditional write.

Each invocation replays the flow's function from its start, the SDK answering the steps
already done from their checkpoints; the invocation that finds the function returned (or
raised) answers SUCCEEDED (or FAILED), and that is when the run ends. An execution that
times out or is stopped never reaches the function: the API's cancel and the sweeper end
those runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_lambda_powertools import Logger
from pydantic import BaseModel

from taskrun.catalog.definitions import CodeFlowRevision
from taskrun.catalog.registry import Catalog
from taskrun.errors import InvalidResult, RunNotFound
from taskrun.flows.durable import DurableFlows, failure_of, steps_of
from taskrun.flows.stepfunctions import FlowStep, failed_step
from taskrun.flows.steps import FlowRun, serving
from taskrun.models import ErrorType, Progress, Run, RunError, RunStatus, utcnow
from taskrun.results.bucket import check_against
from taskrun.runs.store import Ending, RunStore, end_once
from taskrun.telemetry import count

logger = Logger(child=True)

MAX_RESULT_BYTES = 256 * 1024  # a durable execution's result
SERDES_ERRORS = ("SerDesError", "RetryableSerDesError")  # the SDK could not keep a step's result


class FlowInput(BaseModel):
    """What a run's execution is started with (taskrun.flows.durable.flow_input)."""

    run_id: str
    task_id: str
    revision: str
    arguments: dict[str, Any]


class FlowHost:
    def __init__(self, catalog: Catalog, store: RunStore, durable: DurableFlows | None = None) -> None:
        self.catalog = catalog
        self.store = store
        self.durable = durable
        self._handler: Callable[[dict[str, Any], Any], dict[str, Any]] = durable_execution(self.run_flow)

    def run_flow(self, event: dict[str, Any], context: DurableContext) -> Any:
        """The flow's function on the execution's arguments; its return value as JSON."""
        started = FlowInput.model_validate(event)
        revision = self.catalog.get(started.task_id).revisions.get(started.revision)
        if not isinstance(revision, CodeFlowRevision):
            raise LookupError(f"no code-first flow {started.task_id!r} revision {started.revision!r} here")

        def report(progress: Progress) -> None:  # a script step's progress is the run's
            self.store.set_progress(started.run_id, progress)

        serving(FlowRun(started.run_id, self.catalog, report))
        try:
            return revision.call(started.arguments, context)
        finally:
            serving(None)

    def handle(self, event: dict[str, Any], lambda_context: Any) -> dict[str, Any]:
        """One invocation of the execution; the run ends with the invocation that ends it."""
        output = self._handler(event, lambda_context)
        if output.get("Status") in ("SUCCEEDED", "FAILED"):
            self.end(_run_id_of(event), str(event.get("DurableExecutionArn", "")), output)
        return output

    def end(self, run_id: str | None, execution_arn: str, output: dict[str, Any]) -> Run | None:
        """End the run as the execution's last invocation answered; a repeat changes nothing."""
        if run_id is None:
            return None
        try:
            run = self.store.get(run_id)
        except RunNotFound:
            logger.info("execution is not a run", extra={"execution": execution_arn})
            return None
        ending = self._ending(run, execution_arn, output)
        run, ended_here = end_once(self.store, run_id, ending)
        if ended_here:
            count(f"RunsEnded_{run.status.value}")
        return run

    def _ending(self, run: Run, execution_arn: str, output: dict[str, Any]) -> Ending:
        now = utcnow()
        started_at = run.started_at
        if output["Status"] == "SUCCEEDED":
            text = output.get("Result") or "null"
            if len(text.encode()) > MAX_RESULT_BYTES:
                message = f"the flow's result is {len(text.encode()):,} bytes of JSON; at most {MAX_RESULT_BYTES:,}"
                return Ending.failed(now, ErrorType.EXECUTION_ERROR, message)
            result = json.loads(text)
            if run.json_schema is not None:
                try:
                    check_against(result, run.json_schema)
                except InvalidResult as invalid:
                    error = RunError(type=ErrorType.VALIDATION_ERROR, message=str(invalid))
                    return Ending(RunStatus.FAILED, now, None, error, started_at=started_at)
            return Ending(RunStatus.SUCCEEDED, now, result, None, started_at=started_at)
        kind, text = failure_of(output.get("Error"))
        step = self._failed_step(execution_arn)
        if step is not None and step.error:  # the step's own exception, which the SDK wrapped
            kind, text = failure_of({"ErrorType": step.error, "ErrorMessage": step.cause or text})
        message = f"{kind}: {text}".rstrip(": ")
        if step is not None and kind in SERDES_ERRORS:
            message = f"step {step.name!r} returned a result JSON cannot hold ({text})"
        elif step is not None:
            message = f"step {step.name!r} failed: {message}"
        error = RunError(type=ErrorType.EXECUTION_ERROR, message=message, exception_type=kind)
        return Ending(RunStatus.FAILED, now, None, error, started_at=started_at)

    def _failed_step(self, execution_arn: str) -> FlowStep | None:
        """The step the execution failed in, from its history (best effort)."""
        if self.durable is None or not execution_arn:
            return None
        try:
            return failed_step([step for step in steps_of(self.durable.events(execution_arn)) if step.type == "step"])
        except Exception:
            logger.exception("could not read the execution's history")
            return None


def _run_id_of(event: dict[str, Any]) -> str | None:
    """The run id the execution was started with (its EXECUTION operation's input)."""
    operations = (event.get("InitialExecutionState") or {}).get("Operations") or []
    for operation in operations:
        if operation.get("Type") == "EXECUTION":
            payload = (operation.get("ExecutionDetails") or {}).get("InputPayload") or "{}"
            try:
                run_id = json.loads(payload).get("run_id")
            except (ValueError, AttributeError):
                return None
            return str(run_id) if run_id else None
    return None
