"""The `taskrun` command, assembled: each command group registers its commands on the app
when its module is imported (taskrun.cli.base holds the app and what the groups share)."""

from __future__ import annotations

from taskrun.cli import keys, runs, schedules, secrets, serve, tasks
from taskrun.cli.base import app

GROUPS = (runs, tasks, schedules, keys, secrets, serve)  # imported for the commands they register

__all__ = ["GROUPS", "app", "main"]


def main(argv: list[str] | None = None) -> int:
    """A command's exit code, never a traceback for a user's mistake."""
    try:
        app(args=argv, prog_name="taskrun", standalone_mode=True)
    except SystemExit as done:
        return int(done.code or 0) if not isinstance(done.code, str) else 1
    return 0
