"""Example scripts shipped with the bundle: try them with `taskrun local`."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from taskrun import RunContext, task


class Style(BaseModel):
    """How a greeting looks."""

    punctuation: str = Field(default="!", max_length=3)
    uppercase: bool = False


@task("examples/greet", timeout=30)
def greet(name: str, times: Annotated[int, Field(ge=1, le=10)] = 1, style: Style | None = None) -> dict[str, str]:
    """Greet someone, one or more times."""
    style = style or Style()
    words = " ".join([f"hello {name}"] * times) + style.punctuation
    return {"greeting": words.upper() if style.uppercase else words}


@task("examples/echo", timeout=10)
def echo(message: str | None, note: str = "") -> dict[str, str | None]:
    """Give the arguments back as they came: shows `null` (None) and `""` kept apart."""
    return {"message": message, "note": note}


@task("examples/sleep", timeout=120)
def sleep(seconds: Annotated[float, Field(ge=0, le=600)]) -> dict[str, float]:
    """Sleep for a while: a long task to wait for, cancel, or time out."""
    time.sleep(seconds)
    return {"slept": seconds}


@task("examples/countdown", timeout=300)
def countdown(context: RunContext, seconds: Annotated[int, Field(ge=1, le=240)] = 10) -> str:
    """Count down a line a second, saying how far it has come: a run to follow live
    (`taskrun run examples/countdown --logs`, or in the console)."""
    for left in range(seconds, 0, -1):
        print(f"{left}...", flush=True)
        context.progress(seconds - left + 1, seconds, f"{left} s to go")
        time.sleep(1)
    return "lift-off"


class TaskFailure(RuntimeError):
    """What `examples/fail` raises."""


@task("examples/fail", timeout=10)
def fail(message: str = "this task always fails") -> None:
    """Raise an exception, to see how a failed run looks."""
    raise TaskFailure(message)


@task("examples/summarize", timeout=30)
def summarize(text: str, context: RunContext, mode: Literal["words", "sentences"] = "words") -> dict[str, int]:
    """Count words or sentences and report the tokens it "used" on the run."""
    count = len(text.split()) if mode == "words" else max(1, text.count("."))
    context.report_usage(input_tokens=len(text.split()), output_tokens=1)
    return {mode: count}


@task("examples/slow_greet", timeout=2)
def slow_greet(name: str, delay: float = 5.0) -> dict[str, str]:
    """A greeting that takes longer than its 2 s timeout allows, unless `delay` is short."""
    time.sleep(delay)
    return {"greeting": f"hello {name}"}


@task("examples/weighted", revision="1", weight=80, timeout=10)
def weighted_v1(value: int = 0) -> dict[str, int | str]:
    """Revision 1 of a task under a traffic split: 80% of unpinned runs."""
    return {"revision": "1", "value": value}


@task("examples/weighted", revision="2", weight=20, timeout=10)
def weighted_v2(value: int = 0) -> dict[str, int | str]:
    """Revision 2 of a task under a traffic split: 20% of unpinned runs."""
    return {"revision": "2", "value": value * 2}
