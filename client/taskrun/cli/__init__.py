"""The `taskrun` console script. The commands live in taskrun.cli.commands, imported only when it
runs: local mode's sandboxes start by importing the program's main module again (as
multiprocessing does), and that must stay this light."""

from __future__ import annotations

import os


def main(argv: list[str] | None = None) -> int:
    # Local mode is the taskrun service; its loggers are named for it before any is made.
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "taskrun")
    from taskrun.cli.commands import main as run_command

    return run_command(argv)
