"""Catalog scripts as steps of a code-first flow.

`script_step("examples/order/price", quantity=2)` is a step function for `context.step`: it
runs the catalog script's function in the flow function (its arguments validated against
the script's parameters, its result JSON), with a RunContext of its own: its progress
reports become the flow run's progress, its usage is added to the run's, it reads the
secrets the script declares, and what it prints is in the run's logs with its secrets
masked. The SDK checkpoints its result and retries it as the step's config says, as for any
step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taskrun.catalog.context import RunContext
from taskrun.catalog.definitions import ScriptRevision
from taskrun.catalog.registry import Catalog
from taskrun.catalog.secrets import SecretStore, values_of
from taskrun.errors import InvalidInput
from taskrun.models import Progress

LONGEST_STEP_SECONDS = 900  # a step runs within the flow function's invocation, at most Lambda's 15 minutes


@dataclass(frozen=True)
class FlowRun:
    """The run the flow function's invocation serves (one at a time, as Lambda's sandbox)."""

    run_id: str
    catalog: Catalog
    context: RunContext  # the flow's: a script step's usage is added to it
    deadline: float  # time.monotonic() by which this invocation of the flow function ends
    report: Callable[[Progress], None] | None = None
    secrets: SecretStore | None = None
    masked: list[str] = field(default_factory=list)  # texts kept out of the run's logs; a step adds its own


_serving: FlowRun | None = None


def serving(run: FlowRun | None) -> None:
    """Set (or clear) the run this invocation serves; the flow function's host does."""
    global _serving
    _serving = run


def script_step(task_id: str, /, **arguments: Any) -> Callable[[Any], Any]:
    """A step that runs the catalog script `task_id` on `arguments`; its result is the step's."""

    def run(step: Any) -> Any:
        flow = _serving
        if flow is None:
            raise RuntimeError("script_step runs as a step of a code-first flow (in context.step)")
        definition = flow.catalog.get(task_id)
        revision = definition.latest
        if not isinstance(revision, ScriptRevision):
            raise TypeError(f"{task_id} is a {definition.task_type}, not a script: only a script runs as a step")
        try:
            valid = revision.validate(arguments, ("arguments",))
        except InvalidInput as invalid:  # the step's error says what, since no 422 will
            where = "; ".join(f"{error.location}: {error.message}" for error in invalid.errors)
            raise InvalidInput(
                f"the arguments of {task_id} do not match its parameters: {where}", invalid.errors
            ) from None
        secrets = values_of(flow.secrets, revision.secrets)  # a missing one raises SecretNotFound, the step's error
        flow.masked.extend([*revision.secrets_in(valid), *secrets.values()])
        timeout = min(definition.timeout or LONGEST_STEP_SECONDS, LONGEST_STEP_SECONDS)
        context = RunContext(
            run_id=flow.run_id,
            task_id=task_id,
            revision=revision.revision,
            deadline=min(time.monotonic() + timeout, flow.deadline),
            secrets=secrets,
            report=flow.report,
        )
        try:
            return revision.call(valid, context)
        finally:
            context.close()
            flow.context.report_usage(**context.usage)

    run.__name__ = run.__qualname__ = f"script_step[{task_id}]"
    return run
