"""A user's own task directory, loaded with `taskrun local --tasks tests/user_tasks`."""

from pydantic import BaseModel

from taskrun import flow, task


@task("team/add", timeout=5)
def add(a: int, b: int = 0) -> int:
    """Add two numbers."""
    return a + b


class FragileArgs(BaseModel):
    """Add, then fail: a flow whose second step keeps failing."""

    a: int = 1


flow("team/fragile", definition="fragile.asl.json", parameters=FragileArgs)


class SlowArgs(BaseModel):
    """Wait past the execution's own TimeoutSeconds."""


flow("team/slow", definition="slow.asl.json", parameters=SlowArgs)
