"""Task code that changes while the local stack runs takes effect on the next invocation.

The tasks directories (and the template's state machine folder) are watched; on a change
every function's next invocation runs in a new sandbox, which imports the task modules
afresh, and each flow's state machine takes its definition file as it now stands. The
stack's own process never imports the changed code: the flows are read in a child.
"""

from __future__ import annotations

from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from taskrun.local.sandbox import sandbox_context
from taskrun.local.ticker import Ticker

POLL_SECONDS = 0.3

Fingerprint = frozenset[tuple[str, int, int]]


def fingerprint(directories: list[Path]) -> Fingerprint:
    """Every file under the directories, with its modification time and size."""
    seen = set()
    for directory in directories:
        for path in directory.rglob("*"):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            try:
                stat = path.stat()
            except OSError:
                continue
            seen.add((str(path), stat.st_mtime_ns, stat.st_size))
    return frozenset(seen)


def _describe_flows(task_dirs: list[Path], answer: Connection) -> None:
    """In a child: import the task modules and answer each flow's id and definition file."""
    try:
        from taskrun.catalog import FlowRevision, catalog
        from taskrun.loader import load_task_dirs

        load_task_dirs(task_dirs)
        flows = [
            (definition.task_id, str(definition.latest.definition))
            for definition in catalog.all()
            if isinstance(definition.latest, FlowRevision)
        ]
        answer.send(("ok", flows))
    except BaseException as error:
        answer.send(("error", f"{type(error).__name__}: {error}"))


def flows_in(task_dirs: list[Path], timeout: float = 30.0) -> list[tuple[str, Path]]:
    """The flows the task modules register now: (task id, ASL file). Raises on a module that fails."""
    context = sandbox_context()
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_describe_flows, args=(task_dirs, send), name="describe-flows")
    child.start()
    send.close()
    try:
        if not receive.poll(timeout):
            raise TimeoutError(f"the task modules did not import within {timeout:g} s")
        status, value = receive.recv()
    finally:
        child.kill()
        child.join()
        receive.close()
    if status != "ok":
        raise RuntimeError(value)
    return [(task_id, Path(path)) for task_id, path in value]


class Watcher:
    """Calls `on_change` (on its own thread) each time the watched files change."""

    def __init__(self, directories: list[Path], on_change: Callable[[], None]) -> None:
        self.directories = [directory for directory in directories if directory.is_dir()]
        self.on_change = on_change
        self._ticker = Ticker(POLL_SECONDS, self._look, name="task-watcher")

    def start(self) -> None:
        self._seen = fingerprint(self.directories)
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()

    def _look(self) -> None:
        now = fingerprint(self.directories)
        if now != self._seen:
            self._seen = now
            self.on_change()
