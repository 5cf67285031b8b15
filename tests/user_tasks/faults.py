"""Tasks the fault-injection tests run: each leaves a mark when its code starts, so a test
can count how many times a run's code ran."""

import os
import signal
import time
import uuid
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from taskrun import RunContext, flow, task


def _mark(marks: str, ctx: RunContext) -> None:
    Path(marks, f"{ctx.run_id.rpartition(':')[2]}.{uuid.uuid4().hex}").touch()


@task("fault/act", timeout=1)
def act(
    marks: str, ctx: RunContext, act: Literal["ok", "raise", "hang", "die", "nap"] = "ok", seconds: float = 0
) -> str:
    """Mark, then do as told: answer, raise, hang past the 1 s timeout, kill the sandbox the
    script runs under, or nap `seconds` and answer."""
    _mark(marks, ctx)
    if act == "raise":
        raise RuntimeError("the task broke, as asked")
    if act == "hang":
        time.sleep(30)
    if act == "die":
        os.kill(os.getppid(), signal.SIGKILL)  # the worker's sandbox: the invocation dies with it
        time.sleep(30)
    if act == "nap":
        time.sleep(seconds)
    return "done"


class StepArgs(BaseModel):
    """One step of fault/act, retried on Lambda's transient errors as the bundled flows are."""

    marks: str


flow("fault/step", definition="fault_step.asl.json", parameters=StepArgs)
