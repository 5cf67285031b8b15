"""Tasks for the tests of run control: cancels that stop the code, retries, delays."""

import os
import signal
import time
from pathlib import Path

from taskrun import Backoff, task


@task("control/ticker", timeout=60)
def ticker(marks: str, ticks: int = 600) -> int:
    """Append a tick to the file `marks` ten times a second, printing each; `done` at the end."""
    path = Path(marks)
    for tick in range(ticks):
        with path.open("a") as out:
            out.write(f"{tick}\n")
        print(f"tick {tick}", flush=True)
        time.sleep(0.1)
    with path.open("a") as out:
        out.write("done\n")
    return ticks


class Declined(Exception):
    """A failure no retry can mend."""


def _attempt_number(marks: str) -> int:
    """Leave a mark for this attempt; how many attempts (this one included) have been made."""
    path = Path(marks)
    with path.open("a") as out:
        out.write("attempt\n")
    return len(path.read_text().splitlines())


@task("control/flaky", timeout=2, retries=3, backoff=Backoff(first=0.5, factor=2, cap=2, jitter=0))
def flaky(marks: str, failures: int = 2, hang: bool = False) -> int:
    """Fail (or with `hang`, run past the timeout) the first `failures` attempts; then answer
    the attempt's number."""
    attempt = _attempt_number(marks)
    print(f"attempt {attempt}", flush=True)
    if attempt <= failures:
        if hang:
            time.sleep(30)
        raise ConnectionError(f"attempt {attempt} could not connect")
    return attempt


@task("control/declined", timeout=5, retries=3, backoff=Backoff(first=0.5), final=(Declined,))
def declined(marks: str) -> None:
    """Fail with an exception marked final: no retry."""
    _attempt_number(marks)
    raise Declined("the card was declined")


@task("control/patient", timeout=5, retries=2, backoff=Backoff(first=2, jitter=0))
def patient(marks: str, failures: int = 9) -> int:
    """Fail the first `failures` attempts, waiting 2 s before each retry."""
    attempt = _attempt_number(marks)
    if attempt <= failures:
        raise ConnectionError("not yet")
    return attempt


@task("control/fragile", timeout=5, retries=2, backoff=Backoff(first=0.5, jitter=0))
def fragile(marks: str, crashes: int = 1) -> int:
    """Kill the worker's sandbox (as Lambda ends one out of memory) on the first `crashes`
    attempts; then answer the attempt's number."""
    attempt = _attempt_number(marks)
    if attempt <= crashes:
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(5)
    return attempt


@task("control/stubborn", timeout=5, retries=3, backoff=Backoff(first=0.3, factor=1, jitter=0))
def stubborn(marks: str, failures: int = 9, nap: float = 0.0) -> int:
    """Leave a timestamped mark per attempt, nap, then fail the first `failures` attempts."""
    path = Path(marks)
    with path.open("a") as out:
        out.write(f"{time.time()}\n")
    time.sleep(nap)
    attempt = len(path.read_text().splitlines())
    if attempt <= failures:
        raise ConnectionError(f"attempt {attempt} failed")
    return attempt
