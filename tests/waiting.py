"""Waiting on a state, never on the clock alone: a check asked again until it holds, failing
the test past a deadline that only a stuck stack reaches."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(check: Callable[[], T], seconds: float = 15, what: str = "not within the time", every: float = 0.1) -> T:
    """The first truthy answer of `check`, asked every `every` seconds; fails past `seconds`."""
    deadline = time.monotonic() + seconds
    while not (found := check()):
        assert time.monotonic() < deadline, what
        time.sleep(every)
    return found
