"""A user's own task directory, loaded with `taskrun local --tasks tests/user_tasks`."""

import os
import time
from pathlib import Path

from pydantic import BaseModel

from taskrun import flow, task


@task("team/add", timeout=5)
def add(a: int, b: int = 0) -> int:
    """Add two numbers."""
    return a + b


@task("team/exit", timeout=5)
def exit_now(code: int = 1) -> None:
    """Leave the process at once, as a crashing native library would."""
    os._exit(code)


@task("team/nap", timeout=10)
def nap(seconds: float = 5) -> str:
    """Sleep a while, then answer."""
    time.sleep(seconds)
    return "rested"


@task("team/held", timeout=20)
def held(gate: str) -> str:
    """Wait until the file `gate` is there (a test's hold on the run, at most 18 s), then answer."""
    held_until = time.monotonic() + 18
    while not Path(gate).exists() and time.monotonic() < held_until:
        time.sleep(0.02)
    return "released"


@task("team/overrun", timeout=1)
def overrun(marker: str, seconds: float = 3) -> None:
    """Run past the 1 s timeout, then leave a mark: a mark means overrun code kept running."""
    time.sleep(seconds)
    Path(marker).write_text("still running")


@task("team/blob", timeout=10)
def blob(size: int) -> str:
    """A result of `size` characters."""
    print(f"making {size} characters")
    return "x" * size


class FragileArgs(BaseModel):
    """Add, then fail: a flow whose second step keeps failing."""

    a: int = 1


flow("team/fragile", definition="fragile.asl.json", parameters=FragileArgs)


class SlowArgs(BaseModel):
    """Wait past the execution's own TimeoutSeconds."""


flow("team/slow", definition="slow.asl.json", parameters=SlowArgs)


class BulkyArgs(BaseModel):
    """One step returning `size` characters; with `catch` the flow catches ResultTooLarge."""

    size: int
    catch: bool = False


flow("team/bulky", definition="bulky.asl.json", parameters=BulkyArgs)


class WideArgs(BaseModel):
    """One Map iteration a size: each returns that many characters."""

    sizes: list[int]


flow("team/wide", definition="wide.asl.json", parameters=WideArgs)


@task("team/length", timeout=10)
def length(text: str) -> int:
    """How many characters."""
    return len(text)


class RelayArgs(BaseModel):
    """One step returns `size` characters, the next measures them; with `keep` the flow's
    output is the large result itself."""

    size: int
    keep: bool = False


flow("team/relay", definition="relay.asl.json", parameters=RelayArgs)


@task("team/hog", timeout=10)
def hog(megabytes: int = 2048) -> int:
    """Allocate this much memory at once (the worker's MemorySize is 1,024 MB)."""
    return len(bytearray(megabytes * 1024 * 1024))
