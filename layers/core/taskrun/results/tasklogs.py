"""A run's logs: what its task printed or logged, and the traceback of what it raised.

The child process that runs a script writes them to a file of the call's own as they come
(so a run cut off by its timeout or a crash keeps what came before), each line also going
to the function's structured log with the run's id. The file begins with a header that
counts the bytes cut from its front, so the worker knows where its tail lies in the whole
output; the worker keeps the last MAX_LOG_BYTES of it in the results bucket while the call
runs and as it ends (taskrun.results.runlogs).
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import Field

from taskrun.catalog.masking import scrub
from taskrun.modelbase import Model

logger = Logger(child=True)

MAX_LOG_BYTES = 64 * 1024
MAX_FRAMES = 30
TRIM_AT = 4 * MAX_LOG_BYTES  # the file is cut back to its tail past this size
PACKAGE = str(Path(__file__).resolve().parents[1])  # the taskrun package, whose frames a traceback leaves out


MAX_CODE_CHARS = 200  # of a frame's line of source


class Frame(Model):
    file: str
    line: int | None
    function: str
    code: str | None = Field(default=None, description="The line's source text, when the file could be read.")


class RunLogs(Model):
    run_id: str
    text: str = Field(
        description=f"Without a cursor: the last {MAX_LOG_BYTES // 1024} KB the task printed or logged, and its "
        "traceback (a flow's steps and a retried run's attempts each headed by a line of their own). "
        "With a cursor: what came after it (at most as much)."
    )
    truncated: bool = Field(description="Output was left out to keep within the bound (the earlier part of it)")
    cursor: str = Field(description="Pass as `?cursor=` to get only what comes after this answer")
    ended: bool = Field(
        description="The run has ended and this answer reaches the end of its logs: nothing more will come"
    )


HEADER_BYTES = 20  # a log file's header: the bytes cut from its front, as 19 digits and a newline


@dataclass(frozen=True)
class LogTail:
    """The last part of a call's output, and how many bytes of it came before."""

    data: bytes = b""
    offset: int = 0

    @property
    def truncated(self) -> bool:
        return self.offset > 0


def task_frames(error: BaseException, task_dirs: Sequence[Path] = ()) -> list[Frame]:
    """The frames of an exception's traceback outside taskrun itself and the durable execution
    SDK that calls a code-first flow's steps: the task's own code and what it called, innermost
    last (at most MAX_FRAMES), each file as `shown_path` names it."""
    frames = [
        Frame(
            file=shown_path(summary.filename, task_dirs),
            line=summary.lineno,
            function=summary.name,
            code=(summary.line or "")[:MAX_CODE_CHARS] or None,
        )
        for summary in traceback.extract_tb(error.__traceback__)
        if not str(Path(summary.filename).resolve()).startswith(PACKAGE)
    ]
    return [frame for frame in frames if not frame.file.startswith(DURABLE_SDK + "/")][-MAX_FRAMES:]


SHOWN_AS = "shown-as.json"  # in a copy of task modules (a local flow version): each file's own directory name


def shown_path(filename: str, task_dirs: Sequence[Path]) -> str:
    """A file of a traceback as a run shows it, never where it lies on the machine: a task's
    module under its task directory's name (`user_tasks/noisy.py`; a copy's under the name
    of the directory it was copied from), a library's under its import root
    (`json/decoder.py`), anything else by its name alone."""
    path = Path(filename).resolve()
    for directory in task_dirs:
        root = Path(directory).resolve()
        if path.is_relative_to(root):
            relative = path.relative_to(root)
            return str(Path(_copied_from(root).get(relative.parts[0], root.name)) / relative)
    roots = sorted((Path(entry).resolve() for entry in sys.path if entry), key=lambda root: len(root.parts))
    for root in reversed(roots):
        if path.is_relative_to(root) and path != root:
            return str(path.relative_to(root))
    return path.name


@functools.lru_cache(maxsize=32)
def _copied_from(root: Path) -> dict[str, str]:
    """For a directory that holds copies of task modules, the directory name each came from."""
    try:
        shown = json.loads((root / SHOWN_AS).read_text())
    except (OSError, ValueError):
        return {}
    return {str(name): str(origin) for name, origin in shown.items()} if isinstance(shown, dict) else {}


def format_traceback(error: BaseException, frames: list[Frame]) -> str:
    lines = ["Traceback (most recent call last):"]
    for frame in frames:
        lines.append(f'  File "{frame.file}", line {frame.line}, in {frame.function}')
        if frame.code:
            lines.append(f"    {frame.code}")
    lines += traceback.format_exception_only(type(error), error)
    return "\n".join(line.rstrip("\n") for line in lines) + "\n"


class Capture:
    """Collects one call's output into its file, passing each line on to the structured log."""

    def __init__(self, path: Path, secrets: Sequence[str] = ()) -> None:
        self.path = path
        self.secrets = secrets  # texts masked before anything is written
        self._file = path.open("wb")
        self._file.write(_header(0))
        self._size = 0  # of the output in the file
        self._cut = 0  # bytes of output cut from the file's front
        self._partial: dict[str, str] = {}

    def write(self, stream: str, text: str) -> None:
        text = scrub(text, self.secrets)
        data = text.encode("utf-8", errors="replace")
        self._file.write(data)
        self._file.flush()
        self._size += len(data)
        if self._size > TRIM_AT:
            self._trim()
        lines = (self._partial.pop(stream, "") + text).split("\n")
        if lines[-1]:
            self._partial[stream] = lines[-1]
        for line in lines[:-1]:
            if line:
                logger.info(line, extra={"stream": stream})

    def _trim(self) -> None:
        """Cut the file back to its tail. The new file takes the old one's place at once
        (a rename), so the worker reading it meanwhile sees one or the other, whole."""
        self._file.close()
        tail = self.path.read_bytes()[HEADER_BYTES:][-MAX_LOG_BYTES:]
        self._cut += self._size - len(tail)
        spare = self.path.with_name(self.path.name + ".new")
        spare.write_bytes(_header(self._cut) + tail)
        os.replace(spare, self.path)
        self._file = self.path.open("ab")
        self._size = len(tail)

    def close(self) -> None:
        for stream, line in self._partial.items():
            logger.info(line, extra={"stream": stream})
        self._partial.clear()
        self._file.close()


class _Stream(io.TextIOBase):
    def __init__(self, capture: Capture, name: str) -> None:
        self._capture, self._name = capture, name

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._capture.write(self._name, text)
        return len(text)


QUIET_BELOW_WARNING = ("botocore", "boto3", "urllib3")  # the AWS SDK's chatter: "Found credentials in ..."


class _Handler(logging.Handler):
    """The task's log records; taskrun's own (its structured log, which propagates to the
    root logger) and the durable execution SDK's (whose tracebacks name files by their place
    on the machine; a code-first flow's `context.logger` is the root logger's) are not the
    task's, nor the AWS SDK's below WARNING (a client made in a task says where it found
    its credentials)."""

    def __init__(self, capture: Capture) -> None:
        super().__init__()
        self._capture = capture
        self._not_the_tasks = (logger.service, DURABLE_SDK)
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if _under(record.name, self._not_the_tasks):
            if record.name.startswith(DURABLE_SDK) and record.msg == STEP_FAILED and record.exc_info:
                self._step_failed(record)
            return
        if record.levelno < logging.WARNING and _under(record.name, QUIET_BELOW_WARNING):
            return
        try:
            self._capture.write("log", self.format(record) + "\n")
        except Exception:
            self.handleError(record)

    def _step_failed(self, record: logging.LogRecord) -> None:
        """A code-first flow's step that raised: its name and traceback, its files named as a
        run shows them (the SDK's own record names them by their place on the machine)."""
        from taskrun.settings import get_settings

        error = record.exc_info[1] if record.exc_info else None
        if error is None:
            return
        name = record.args[1] if isinstance(record.args, tuple) and len(record.args) > 1 else "?"
        shown = format_traceback(error, task_frames(error, get_settings().task_dirs))
        try:
            self._capture.write("log", f"step {name} raised (its retry policy decides what follows):\n{shown}")
        except Exception:
            self.handleError(record)


DURABLE_SDK = "aws_durable_execution_sdk_python"
STEP_FAILED = "❌ failed step for id: %s, name: %s"  # the SDK's record of a step that raised


def _under(name: str, loggers: Sequence[str]) -> bool:
    return any(name == logger_name or name.startswith(logger_name + ".") for logger_name in loggers)


def log_level() -> int:
    name = os.environ.get("TASKRUN_LOG_LEVEL", "INFO").upper()
    level = logging.getLevelName(name)
    return level if isinstance(level, int) else logging.INFO


@contextlib.contextmanager
def captured(path: Path, secrets: Sequence[str] = ()) -> Iterator[Capture]:
    """While a call runs: its stdout, stderr and log records (at TASKRUN_LOG_LEVEL) go to
    `path`, each of `secrets` masked."""
    capture = Capture(path, secrets)
    handler = _Handler(capture)
    root = logging.getLogger()
    saved: tuple[Any, Any, int] = (sys.stdout, sys.stderr, root.level)
    sys.stdout, sys.stderr = _Stream(capture, "stdout"), _Stream(capture, "stderr")
    root.addHandler(handler)
    root.setLevel(log_level())
    try:
        yield capture
    finally:
        sys.stdout, sys.stderr = saved[0], saved[1]
        root.removeHandler(handler)
        root.setLevel(saved[2])
        capture.close()


def _header(cut: int) -> bytes:
    return f"{cut:0{HEADER_BYTES - 1}d}\n".encode()


def read_tail(path: Path) -> LogTail:
    """The last MAX_LOG_BYTES of a call's output so far (it may end inside a character)."""
    try:
        with path.open("rb") as stream:
            header = stream.read(HEADER_BYTES)
            cut = int(header) if len(header) == HEADER_BYTES and header[:-1].isdigit() else 0
            stream.seek(0, os.SEEK_END)
            start = max(HEADER_BYTES, stream.tell() - MAX_LOG_BYTES)
            stream.seek(start)
            data = stream.read(MAX_LOG_BYTES)
    except FileNotFoundError:
        return LogTail()
    return LogTail(data, cut + start - HEADER_BYTES)
