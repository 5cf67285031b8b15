"""A user's own task directory, loaded with `taskrun local --tasks tests/user_tasks`."""

from taskrun import task


@task("team/add", timeout=5)
def add(a: int, b: int = 0) -> int:
    """Add two numbers."""
    return a + b
