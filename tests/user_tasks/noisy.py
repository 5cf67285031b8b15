"""Tasks that print, log and raise, for the tests of a run's logs."""

import logging
import time
from pathlib import Path

from pydantic import BaseModel

from taskrun import RunContext, flow, task

log = logging.getLogger("noisy")


def _check(number: int) -> int:
    if number > 2:
        raise ValueError(f"{number} is too many")
    return number


@task("noisy/fail", timeout=5)
def fail(number: int = 3) -> int:
    """Print, log, then raise from a helper."""
    print(f"checking {number}")
    log.info("about to check %d", number)
    log.debug("a detail below the log level")
    return _check(number)


@task("noisy/chatty", timeout=10)
def chatty(lines: int = 10, width: int = 100) -> int:
    """Print `lines` numbered lines of `width` characters."""
    for line in range(lines):
        print(f"{line:06d} " + "x" * width)
    return lines


@task("noisy/stuck", timeout=1)
def stuck() -> None:
    """Print, then run past the timeout."""
    print("started; now waiting", flush=True)
    time.sleep(30)


@task("noisy/steady", timeout=60)
def steady(context: RunContext, lines: int = 5, every: float = 1.0, word: str = "line", gate: str = "") -> int:
    """Print one line every `every` seconds, saying how far it has come after each; with a
    `gate` (a file's path), wait after the first line until that file is there (a test's
    hold on the run, at most 50 s)."""
    for number in range(1, lines + 1):
        print(f"{word} {number} of {lines}", flush=True)
        context.progress(number, lines, f"{word} {number}")
        if number == 1 and gate:
            held_until = time.monotonic() + 50
            while not Path(gate).exists() and time.monotonic() < held_until:
                time.sleep(0.05)
        time.sleep(every)
    return lines


class PacedArgs(BaseModel):
    """How many lines the flow's one step prints, a second apart."""

    lines: int = 3


flow("noisy/paced", definition="paced.asl.json", parameters=PacedArgs)


@task("noisy/reckless", timeout=10)
def reckless(context: RunContext) -> None:
    """Report a progress that makes no sense."""
    context.progress(-1, 10)
