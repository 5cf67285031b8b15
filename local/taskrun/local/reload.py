"""Task code that changes while the local stack runs takes effect on the next invocation.

The tasks directories (and the template's state machine folder) are watched; on a change
every function's next invocation runs in a new sandbox, which imports the task modules
afresh, and each flow's state machine takes its definition file as it now stands. The
stack's own process never imports the changed code: the modules are read in a child, each on
its own, so that one that no longer imports is named (file, line and error) and kept as it
last imported (taskrun.catalog.loader), while the others take effect.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

from taskrun.catalog.loader import ModuleProblem
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


@dataclass
class TaskCode:
    """The task modules as they stand: each flow's id and definition file; the source of each
    module file that imports; and the problem of each module that does not, with whether a
    version of it that imported is kept (its tasks served as they were) or not (unknown)."""

    flows: list[tuple[str, Path]] = field(default_factory=list)
    sources: dict[str, tuple[str, str]] = field(default_factory=dict)  # module: (its file, the text that imported)
    problems: dict[str, tuple[ModuleProblem, bool]] = field(default_factory=dict)  # module: (problem, kept)


def _describe(task_dirs: list[Path], kept: Path, answer: Connection) -> None:
    """In a child: import each task module on its own, the kept version of its file in place
    of one that does not import; answer what `TaskCode` holds."""
    try:
        from taskrun.catalog.definitions import FlowRevision
        from taskrun.catalog.loader import module_file, problem_of, run_module, task_modules
        from taskrun.catalog.registry import catalog

        code = TaskCode()
        for directory in task_dirs:
            sys.path.insert(0, str(directory.resolve()))
            for name in task_modules(directory):
                file = module_file(directory, name)
                try:
                    if file.name == f"{name}.py":
                        text = file.read_text()
                        run_module(name, file, text)
                        code.sources[name] = (str(file), text)
                    else:
                        importlib.import_module(name)
                except Exception as error:  # whatever a module raises as it imports
                    sys.modules.pop(name, None)
                    keeps = file.name == f"{name}.py" and (kept / f"{name}.py").is_file()
                    code.problems[name] = (problem_of(name, error, file, task_dirs), keeps)
                    if keeps:
                        run_module(name, file, (kept / f"{name}.py").read_text())
        code.flows = [
            (definition.task_id, definition.latest.definition)
            for definition in catalog.all()
            if isinstance(definition.latest, FlowRevision)
        ]
        answer.send(("ok", code))
    except BaseException as error:
        answer.send(("error", f"{type(error).__name__}: {error}"))


def describe_task_code(task_dirs: list[Path], kept: Path, timeout: float = 30.0) -> TaskCode:
    """The task modules as they stand, read in a child process (the stack's own never
    imports task code). Raises if that cannot be told (a module that hangs as it imports)."""
    context = sandbox_context()
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_describe, args=(task_dirs, kept, send), name="describe-tasks")
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
    assert isinstance(value, TaskCode)
    return value


class Watcher:
    """Calls `on_change` (on its own thread) each time the watched files change."""

    def __init__(self, directories: list[Path], on_change: Callable[[], None]) -> None:
        self.directories = [directory for directory in directories if directory.is_dir()]
        self.on_change = on_change
        self._ticker = Ticker(POLL_SECONDS, self._look, name="task-watcher")
        self._looking = threading.Lock()  # one look (and its `on_change`) at a time

    def start(self) -> None:
        self._seen = fingerprint(self.directories)
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()

    def settle(self) -> None:
        """Look now, rather than at the next poll: a change not seen yet has its `on_change`
        before this returns, and one under way is waited for."""
        self._look()

    def _look(self) -> None:
        with self._looking:
            now = fingerprint(self.directories)
            if now != self._seen:
                self._seen = now
                self.on_change()
