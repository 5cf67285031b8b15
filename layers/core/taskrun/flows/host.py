"""The flow function: it runs a code-first flow under the durable execution SDK, choosing
the flow by the task id its execution was started with (as the worker chooses a script),
and ends the run as the execution ends, by one conditional write.

Each invocation replays the flow's function from its start, the SDK answering the steps
already done from their checkpoints; the invocation that finds the function returned (or
raised) answers SUCCEEDED (or FAILED), and that is when the run ends. An execution that
times out or is stopped never reaches the function: the API's cancel and the sweeper end
those runs.

What an invocation prints or logs is a part of the run's logs (`flow started`, then `flow
resumed` for each invocation after a wait, a callback or a retry), its secrets masked;
`context.logger` logs once, since it is quiet while the function replays, where a `print`
in the flow's body prints again on each replay. Usage a RunContext collects is added to the
run's as each invocation ends.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aws_durable_execution_sdk_python import DurableContext, durable_execution
from aws_lambda_powertools import Logger

from taskrun.catalog.context import RunContext
from taskrun.catalog.definitions import CodeFlowRevision
from taskrun.catalog.registry import Catalog
from taskrun.catalog.secrets import SecretStore, values_of
from taskrun.errors import RunNotFound
from taskrun.flows.durable import DurableFlows, failure_of, result_ending, steps_of
from taskrun.flows.stepfunctions import FlowStep, failed_step
from taskrun.flows.steps import FlowRun, serving
from taskrun.modelbase import Model
from taskrun.models import ErrorType, Progress, Run, RunError, RunStatus, utcnow
from taskrun.results.runlogs import LogStore, part_name
from taskrun.results.tasklogs import LogTail, captured, read_tail
from taskrun.runs.store import Ending, RunStore, added, end_once
from taskrun.telemetry import count

logger = Logger(child=True)

LONGEST_INVOCATION_SECONDS = 900  # Lambda's most
SERDES_ERRORS = ("SerDesError", "RetryableSerDesError")  # the SDK could not keep a step's result


class FlowInput(Model):
    """What a run's execution is started with (taskrun.flows.durable.flow_input)."""

    run_id: str
    task_id: str
    revision: str
    arguments: dict[str, Any]


@dataclass
class Invocation:
    """What one invocation of the flow function gathers for its run."""

    deadline: float  # time.monotonic() by which the invocation ends
    masked: list[str] = field(default_factory=list)  # texts kept out of the run's logs
    usage: dict[str, float] = field(default_factory=dict)


class FlowHost:
    def __init__(
        self,
        catalog: Catalog,
        store: RunStore,
        durable: DurableFlows | None = None,
        secrets: SecretStore | None = None,
        logs: LogStore | None = None,
    ) -> None:
        self.catalog = catalog
        self.store = store
        self.durable = durable
        self.secrets = secrets
        self.logs = logs
        self._handler: Callable[[dict[str, Any], Any], dict[str, Any]] = durable_execution(self.run_flow)
        self._invocation = Invocation(deadline=time.monotonic() + LONGEST_INVOCATION_SECONDS)

    def run_flow(self, event: dict[str, Any], context: DurableContext) -> Any:
        """The flow's function on the execution's arguments; its return value as JSON."""
        started = FlowInput.model_validate(event)
        revision = self.catalog.get(started.task_id).revisions.get(started.revision)
        if not isinstance(revision, CodeFlowRevision):
            raise LookupError(f"no code-first flow {started.task_id!r} revision {started.revision!r} here")
        invocation = self._invocation
        invocation.masked.extend(revision.secrets_in(started.arguments))
        secrets = values_of(self.secrets, revision.secrets, "flow")  # a missing one fails the run
        invocation.masked.extend(secrets.values())

        def report(progress: Progress) -> None:  # progress reported in the flow or a script step is the run's
            self.store.set_progress(started.run_id, progress)

        run = RunContext(
            started.run_id, started.task_id, revision.revision, invocation.deadline, secrets=secrets, report=report
        )
        serving(
            FlowRun(started.run_id, self.catalog, run, invocation.deadline, report, self.secrets, invocation.masked)
        )
        try:
            return revision.call(started.arguments, context, run)
        finally:
            serving(None)
            run.close()
            invocation.usage = run.usage

    def handle(self, event: dict[str, Any], lambda_context: Any) -> dict[str, Any]:
        """One invocation of the execution: its output kept as a part of the run's logs, its
        usage added to the run's; the run ends with the invocation that ends it."""
        run_id = _run_id_of(event)
        began = time.time_ns()
        left = lambda_context.get_remaining_time_in_millis() / 1000 if lambda_context else LONGEST_INVOCATION_SECONDS
        self._invocation = invocation = Invocation(deadline=time.monotonic() + left)
        path = Path(tempfile.gettempdir()) / f"taskrun-flow-{os.getpid()}-{began}.log"
        try:
            with captured(path, invocation.masked):
                output = self._handler(event, lambda_context)
            tail = read_tail(path)
        finally:
            path.unlink(missing_ok=True)
        if run_id is not None:
            self._keep_logs(run_id, part_name(began, "flow-resumed" if _resumed(event) else "flow-started"), tail)
        if output.get("Status") in ("SUCCEEDED", "FAILED"):
            self.end(run_id, str(event.get("DurableExecutionArn", "")), output, invocation.usage)
        elif run_id is not None and invocation.usage:
            self._keep_usage(run_id, invocation.usage)
        return output

    def _keep_logs(self, run_id: str, part: str, tail: LogTail) -> None:
        if self.logs is None or not tail.data:
            return
        try:
            self.logs.put(run_id, part, tail, open=False)
        except Exception:  # the run's outcome matters more than its logs
            logger.exception("the run's logs could not be kept")

    def _keep_usage(self, run_id: str, usage: dict[str, float]) -> None:
        try:
            self.store.add_usage(run_id, usage)
        except Exception:  # the run's outcome matters more than its usage
            logger.exception("the run's usage could not be kept")

    def end(
        self, run_id: str | None, execution_arn: str, output: dict[str, Any], usage: dict[str, float] | None = None
    ) -> Run | None:
        """End the run as the execution's last invocation answered; a repeat changes nothing."""
        if run_id is None:
            return None
        try:
            run = self.store.get(run_id)
        except RunNotFound:
            logger.info("execution is not a run", extra={"execution": execution_arn})
            return None
        ending = dataclasses.replace(self._ending(run, execution_arn, output), usage=added(run.usage, usage))
        run, ended_here = end_once(self.store, run_id, ending)
        if ended_here:
            count(f"RunsEnded_{run.status.value}")
        return run

    def _ending(self, run: Run, execution_arn: str, output: dict[str, Any]) -> Ending:
        now = utcnow()
        started_at = run.started_at
        if output["Status"] == "SUCCEEDED":
            return result_ending(output.get("Result"), run.json_schema, now, started_at)
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


def _resumed(event: dict[str, Any]) -> bool:
    """Whether the execution has operations beyond its start: this invocation resumes it."""
    operations = (event.get("InitialExecutionState") or {}).get("Operations") or []
    return any(operation.get("Type") != "EXECUTION" for operation in operations)


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
