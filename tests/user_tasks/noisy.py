"""Tasks that print, log and raise, for the tests of a run's logs."""

import logging
import time

from taskrun import task

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
