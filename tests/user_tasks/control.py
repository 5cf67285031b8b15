"""Tasks for the tests of run control: cancels that stop the code, retries, delays."""

import fcntl
import os
import signal
import time
from pathlib import Path

from taskrun import Backoff, Limit, RunContext, task


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


@task("control/patient", timeout=5, retries=2, backoff=Backoff(first=6, jitter=0))
def patient(marks: str, failures: int = 9) -> int:
    """Fail the first `failures` attempts, waiting 6 s before each retry (time enough for a
    test to act during the wait, on a busy machine too)."""
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


def _count(counter: str, step: int) -> None:
    """Add `step` to the number of runs executing now, kept in the file `counter` as
    'now peak', under a lock (each run records its own overlap with the others)."""
    with open(counter, "a+") as file:
        fcntl.flock(file, fcntl.LOCK_EX)
        file.seek(0)
        now, peak = (int(part) for part in (file.read().split() or ["0", "0"]))
        now += step
        file.seek(0)
        file.truncate()
        file.write(f"{now} {max(peak, now)}")


@task("control/probe", timeout=30, concurrency=3)
def probe(counter: str, nap: float = 0.05) -> float:
    """Count itself in while it naps, so the peak shows how many ran at once (at most 3)."""
    return _nap_counted(counter, nap)


@task("control/tenant", timeout=30, concurrency=4, per_key=1)
def tenant(counter: str, nap: float = 0.3) -> float:
    """At most 4 at once, at most 1 per concurrency_key; the caller gives each key its counter."""
    return _nap_counted(counter, nap)


def _nap_counted(counter: str, nap: float) -> float:
    _count(counter, 1)
    try:
        time.sleep(nap)
    finally:
        _count(counter, -1)
    return time.time()


QUOTA = Limit("test-quota", 2)


@task("control/quota_a", timeout=30, concurrency=QUOTA)
def quota_a(counter: str, nap: float = 0.3) -> float:
    """Shares the `test-quota` limit (2) with control/quota_b."""
    return _nap_counted(counter, nap)


@task("control/quota_b", timeout=30, concurrency=QUOTA)
def quota_b(counter: str, nap: float = 0.3) -> float:
    return _nap_counted(counter, nap)


@task("control/single", timeout=10, concurrency=1)
def single(marks: str, act: str = "nap", nap: float = 0.2) -> float:
    """One at a time; `act` "die" kills the worker's sandbox holding the slot."""
    _attempt_number(marks)
    if act == "die":
        os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(nap)
    return time.time()


@task("control/charge", timeout=10, secrets=["test-stripe"])
def charge(amount: int, context: RunContext, leak: bool = False) -> dict[str, int]:
    """Read a declared secret; print it and put it in an error when asked to (to show both masked)."""
    key = context.secret("test-stripe")
    print(f"charging {amount} with {key}", flush=True)
    if leak:
        raise PermissionError(f"the key {key} was refused")
    return {"amount": amount, "key_length": len(key)}


@task("control/nosy", timeout=10, secrets=["test-absent"])
def nosy(marks: str) -> None:
    """Declares a secret that is never set: it must never start."""
    _attempt_number(marks)


@task("control/tally", timeout=60)
def tally(marks: str, gate: str, context: RunContext) -> str:
    """Note this run's id in `marks` (a line each time its code starts), then wait for the
    file `gate` to exist."""
    with Path(marks).open("a") as out:
        out.write(context.run_id + "\n")
    while not Path(gate).exists():
        time.sleep(0.05)
    return context.run_id
