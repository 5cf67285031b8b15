"""Where the worker runs scripts: a child process of its sandbox, so one that runs past its
time limit can be stopped.

Lambda freezes a sandbox between invocations and thaws it for the next: a script left
running on a thread would go on beside an unrelated run. So each sandbox forks one child
(after its imports, so the child starts at once with the catalog loaded), hands it one
call at a time over a pipe, and kills it when a call outlasts its limit; the next call
gets a new child. Module state of the task code lives in the child and lasts from run to
run, as it would in a warm Lambda. A script that ends its process fails its own run.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import math
import multiprocessing
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger

from taskrun.catalog.context import RunContext
from taskrun.catalog.definitions import ScriptRevision
from taskrun.catalog.masking import scrub
from taskrun.catalog.registry import Catalog
from taskrun.errors import InvalidResult, TaskNotFound
from taskrun.models import Progress
from taskrun.results.tasklogs import Frame, LogTail, captured, format_traceback, read_tail, task_frames
from taskrun.settings import get_settings

logger = Logger(child=True)

# How often a running call asks whether its run was cancelled: a cancel stops the task's code
# within about this long (a consistent read of the run's status: one read unit per 4 KB of its item).
CANCEL_CHECK_SECONDS = 0.5
LIVE_LOG_SECONDS = 1.0  # how often a running call's output so far is handed to the worker


PROGRESS = "progress"  # a message of the child: a progress report, before its call's answer


@dataclass
class Watch:
    """What the worker does while a call runs (each at most so often)."""

    cancelled: Callable[[], bool] | None = None  # asked every CANCEL_CHECK_SECONDS: True stops the call
    tick: Callable[[LogTail], None] | None = None  # the output so far, every LIVE_LOG_SECONDS
    progress: Callable[[Progress], None] | None = None  # each progress report of the task


@dataclass
class Outcome:
    result: Any = None
    error: BaseException | None = None
    timed_out: bool = False
    cancelled: bool = False  # stopped because its run was cancelled while it ran
    final: bool = False  # the error is of a type the task marked final: no retry
    usage: dict[str, float] = field(default_factory=dict)
    frames: list[Frame] = field(default_factory=list)  # of the error the script raised
    logs: LogTail = field(default_factory=LogTail)  # the last of what it printed or logged, and its traceback


class TaskProcessExited(Exception):
    """The script ended the process it ran in (os._exit, a crash in native code)."""


@dataclass(frozen=True)
class Call:
    task_id: str
    revision: str
    arguments: dict[str, Any]
    context_id: str  # the run id, or a flow step's execution
    deadline: float  # time.monotonic() by which the script should be done
    log_path: str = ""  # where the child writes what the script prints and logs
    secrets: dict[str, str] = field(default_factory=dict, repr=False)  # the task's declared secrets


class ScriptProcess:
    """One child process at a time, running the scripts of `catalog`."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._process: Any = None
        self._conn: Connection | None = None

    def call(self, call: Call, limit: float, watch: Watch | None = None) -> Outcome:
        """Run one call; its outcome carries the call's logs, whichever way it ended."""
        with tempfile.TemporaryDirectory(prefix="taskrun-") as folder:
            path = Path(folder) / "output.log"
            outcome = self._call(dataclasses.replace(call, log_path=str(path)), limit, watch or Watch(), path)
            outcome.logs = read_tail(path)
        return outcome

    def _call(self, call: Call, limit: float, watch: Watch, path: Path) -> Outcome:
        conn = self._started()
        try:
            conn.send(call)
        except OSError:  # the child is gone (killed between calls): start another
            self.stop()
            conn = self._started()
            conn.send(call)
        now = time.monotonic()
        deadline = now + limit
        next_check = now + CANCEL_CHECK_SECONDS if watch.cancelled is not None else math.inf
        next_tick = now + LIVE_LOG_SECONDS if watch.tick is not None else math.inf
        while True:
            now = time.monotonic()
            if now >= deadline:
                self.stop()
                return Outcome(timed_out=True)
            if now >= next_check:
                next_check = now + CANCEL_CHECK_SECONDS
                if watch.cancelled is not None and _quietly("check whether the run was cancelled", watch.cancelled):
                    self.stop()
                    return Outcome(cancelled=True)
            if now >= next_tick:
                next_tick = now + LIVE_LOG_SECONDS
                if watch.tick is not None:
                    _quietly("keep the logs and progress so far", watch.tick, read_tail(path))
            if not conn.poll(max(0.0, min(deadline, next_check, next_tick) - now)):
                continue
            try:
                message = conn.recv()
            except (EOFError, OSError):
                code = self.stop()
                return Outcome(error=TaskProcessExited(f"the task ended its process (exit status {code})"))
            if message[0] != PROGRESS:
                break
            if watch.progress is not None:
                _quietly("keep the progress", watch.progress, message[1])
        status, result, error_name, message_text, usage, frames = message
        if status == "ok":
            return Outcome(result=result, usage=usage)
        if status == "invalid":
            return Outcome(error=InvalidResult(message_text), usage=usage)
        return Outcome(
            error=_named_error(error_name, message_text), usage=usage, frames=frames, final=status == "final"
        )

    def stop(self) -> int | None:
        """Kill the child (if any); return its exit status."""
        process, self._process = self._process, None
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if process is None:
            return None
        if process.is_alive():
            process.kill()
        process.join(5)
        return int(process.exitcode) if process.exitcode is not None else None

    def _started(self) -> Connection:
        if self._process is not None and self._conn is not None and self._process.is_alive():
            return self._conn
        self.stop()
        context = multiprocessing.get_context("fork")
        parent_end, child_end = context.Pipe()
        process = context.Process(target=_serve, args=(child_end, self.catalog, os.getpid()), name="task", daemon=True)
        process.start()
        child_end.close()
        self._process, self._conn = process, parent_end
        return parent_end


def _quietly(what: str, action: Callable[..., Any], *arguments: Any) -> Any:
    """What `action` answers; None if it fails (logged): a failed check is no cancel, the next
    one asks again; logs or progress not kept now are kept with the next or at the end."""
    try:
        return action(*arguments)
    except Exception:
        logger.exception(f"could not {what}")
        return None


def _serve(conn: Connection, catalog: Catalog, parent: int) -> None:
    """The child: run each call it is handed and answer how it went, until the pipe closes."""
    die_with_parent(parent)
    while True:
        try:
            call: Call = conn.recv()
        except (EOFError, OSError):
            os._exit(0)
        logger.append_keys(run_id=call.context_id, task_id=call.task_id)
        secrets = _secrets_of(call, catalog)
        with captured(Path(call.log_path), secrets) as capture:
            reply, trace = _run(call, catalog, conn)
            if trace:
                capture.write("stderr", trace)
        if reply[3]:  # the error's message
            reply = (*reply[:3], scrub(reply[3], secrets), *reply[4:])
        try:
            conn.send(reply)
        except Exception as error:  # a result pickle cannot carry
            conn.send(("error", None, type(error).__name__, f"the result could not be handed back: {error}", {}, []))


def _secrets_of(call: Call, catalog: Catalog) -> list[str]:
    """The texts of the call's secret arguments and of its task's secrets, kept out of its
    logs and error message."""
    declared = [value for value in call.secrets.values() if value]
    try:
        return [*catalog.get(call.task_id).revisions[call.revision].secrets_in(call.arguments), *declared]
    except (TaskNotFound, KeyError):
        return declared


def _run(call: Call, catalog: Catalog, conn: Connection) -> tuple[tuple[Any, ...], str]:
    """How one call went, (status, result, error name, message, usage, frames), and the
    traceback of what it raised, for its logs. Progress reports go to the worker meanwhile."""
    context = RunContext(
        call.context_id,
        call.task_id,
        call.revision,
        call.deadline,
        call.secrets,
        report=lambda progress: conn.send((PROGRESS, progress)),
    )
    try:
        return _outcome_of(call, catalog, context)
    finally:
        context.close()  # the last report goes now, and none after (a thread the script left)


def _outcome_of(call: Call, catalog: Catalog, context: RunContext) -> tuple[tuple[Any, ...], str]:
    script = None
    try:
        script = catalog.get(call.task_id).revisions[call.revision]
        if not isinstance(script, ScriptRevision):
            raise TypeError(f"task {call.task_id!r} revision {call.revision!r} is not a script")
        return ("ok", script.call(call.arguments, context), None, None, context.usage, []), ""
    except InvalidResult as error:
        return ("invalid", None, type(error).__name__, str(error), context.usage, []), ""
    except BaseException as error:  # the run records whatever the script raised
        frames = task_frames(error, get_settings().task_dirs)
        final = isinstance(script, ScriptRevision) and isinstance(error, script.final)
        reply = ("final" if final else "error", None, type(error).__name__, str(error), context.usage, frames)
        return reply, format_traceback(error, frames)


def _named_error(name: str, message: str) -> Exception:
    """An exception of the script's exception's name, which the run and Step Functions show."""
    kind = type(name if name.isidentifier() else "TaskError", (Exception,), {"__module__": "task"})
    return kind(message) if message else kind()


def die_with_parent(parent: int) -> None:
    """Linux: the child gets SIGKILL when the sandbox process (pid `parent`) goes, whatever it
    is doing; and one whose sandbox went between the fork and this call, which no signal
    would tell, ends at once rather than live on as an orphan."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:
        os._exit(1)
