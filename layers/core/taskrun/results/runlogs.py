"""A run's logs in the results bucket: kept while the run goes on, read whole or from a cursor.

A run's logs are one or more parts, each the output of one call of a script: the only
attempt of a run (`logs/<run_id>.txt`), or each attempt of a retried run and each step of a
flow (`logs/<run_id>/<ns>_<part>.txt`, `ns` the time the part began, so that parts sort in
the order they began). While a call runs, the worker rewrites its part at most once every
LIVE_LOG_SECONDS, and only when the call printed something new; it writes it once more as the
call ends, before the run is seen ended. A part holds the last MAX_LOG_BYTES of its call's
output, and says in its metadata where that text begins in the whole output (`offset`) and
whether the call is still going (`open`).

A cursor is a part and a byte offset in its output. Read from a cursor, parts come in the
order they began, and the answer stops at the first part still open: the output of parallel
flow steps shows, in that order, once the steps that began before them have ended.
"""

from __future__ import annotations

import codecs
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from taskrun import aws
from taskrun.errors import FieldError, InvalidInput
from taskrun.models import Progress, RunStatus
from taskrun.results.tasklogs import MAX_LOG_BYTES, LogTail, RunLogs
from taskrun.runs import cursors
from taskrun.runs.scripts import Watch
from taskrun.runs.store import RunStore

logger = Logger(child=True)

PROGRESS_WRITE_SECONDS = 1.0  # a run's progress is written at most this often (and as its call ends)
PATIENCE_SECONDS = 30.0  # how long a throttled write of a call's last logs is tried again
STEP_SLASH = "~"  # stands for "/" of a task id in a part's name
PART_PATTERN = re.compile(r"\d{1,20}_[A-Za-z0-9~._-]{1,250}")
MAX_PARTS = 1000  # listed for one read; a flow with more steps shows its first ones


@dataclass(frozen=True)
class Position:
    part: str  # "" for a run's only part, or a part's name
    at: int  # bytes of the part's output already read

    def encode(self, run_id: str) -> str:
        return cursors.pack({"run": run_id, "part": self.part, "at": self.at})

    @classmethod
    def decode(cls, cursor: str, run_id: str) -> Position:
        """The position a cursor of this run holds; InvalidInput at `query.cursor` otherwise."""
        key = cursors.unpack(cursor)
        if (
            isinstance(key, dict)
            and set(key) == {"run", "part", "at"}
            and key["run"] == run_id
            and isinstance(key["part"], str)
            and (key["part"] == "" or PART_PATTERN.fullmatch(key["part"]))
            and type(key["at"]) is int
            and 0 <= key["at"] < 2**53
        ):
            return cls(key["part"], key["at"])
        raise InvalidInput(
            "the cursor is not one this API gave out for this run",
            [FieldError("query.cursor", "invalid cursor", cursor[:200])],
        )


@dataclass(frozen=True)
class Part:
    name: str
    data: bytes
    offset: int  # of `data` in the part's whole output
    open: bool

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


def part_name(started_ns: int, label: str) -> str:
    """The name of a part that began at `started_ns`: `attempt-N`, or a flow step's task id."""
    return f"{started_ns}_{label.replace('/', STEP_SLASH)}"


def heading(part: str) -> str:
    """The line before a part: a flow's step (named by its task id), an attempt of a retried
    run, or an invocation of a code-first flow's function (`flow-started`, `flow-resumed`)."""
    label = part.split("_", 1)[-1]
    if label.startswith("attempt-"):
        return f"--- attempt {label.removeprefix('attempt-')} ---\n"
    if label.startswith("flow-"):
        return f"--- flow {label.removeprefix('flow-')} ---\n"
    return f"--- step {label.replace(STEP_SLASH, '/')} ---\n"


class LogStore:
    """The parts of runs' logs in the stack's bucket."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    @staticmethod
    def key(run_id: str, part: str) -> str:
        return f"logs/{run_id}.txt" if part == "" else f"logs/{run_id}/{part}.txt"

    def put(self, run_id: str, part: str, tail: LogTail, open: bool) -> None:
        """Write a part: the last of a call's output so far, and whether the call goes on."""
        aws.client("s3").put_object(
            Bucket=self.bucket,
            Key=self.key(run_id, part),
            Body=tail.data,
            ContentType="text/plain; charset=utf-8",
            Metadata={
                "offset": str(tail.offset),
                "truncated": "true" if tail.truncated else "false",
                "open": "true" if open else "false",
            },
        )

    def read(self, run_id: str, ended: bool, cursor: str | None = None) -> RunLogs:
        """A run's logs: the last MAX_LOG_BYTES of them, or with `cursor`, what came after it.
        `ended`: whether the run has ended (then no part is open, whatever its metadata says:
        a worker that died could not close it)."""
        start = Position.decode(cursor, run_id) if cursor is not None else None
        names, listed_all = self._names(run_id)
        if start is None:
            return self._whole(run_id, names, ended and listed_all)
        return self._after(run_id, names, start, ended and listed_all)

    def _whole(self, run_id: str, names: list[str], ended: bool) -> RunLogs:
        pieces: list[bytes] = []
        size, truncated = 0, False
        last: Position | None = None  # where a read from the answer's cursor begins
        for name in reversed(names):
            part = self._get(run_id, name, ended)
            if part is None:
                continue
            if last is None:
                last = Position(name, part.end)
            if size >= MAX_LOG_BYTES:
                truncated = True
                break
            pieces.append((heading(name).encode() if name else b"") + part.data)
            truncated = truncated or part.offset > 0
            size += len(part.data)
        data = b"".join(reversed(pieces))
        if len(data) > MAX_LOG_BYTES:
            data, truncated = data[-MAX_LOG_BYTES:], True
        return RunLogs(
            run_id=run_id,
            text=data.decode(errors="ignore"),
            truncated=truncated,
            cursor=(last or Position("", 0)).encode(run_id),
            ended=ended,
        )

    def _after(self, run_id: str, names: list[str], start: Position, ended: bool) -> RunLogs:
        pieces: list[str] = []
        budget, truncated = MAX_LOG_BYTES, False
        position = start
        for name in names:
            if name < start.part:
                continue
            part = self._get(run_id, name, ended)
            if part is None:
                continue
            at = start.at if name == start.part else 0
            if name != start.part and name:
                pieces.append(heading(name))
            if at < part.offset:  # what came between was cut from the part's front
                truncated, at = True, part.offset
            data = part.data[at - part.offset :]
            if len(data) > budget:
                data, part_open = data[:budget], True  # the rest comes with the next read
            else:
                part_open = part.open
            text, used = _whole_characters(data, final=not part_open)
            pieces.append(text)
            position = Position(name, at + used)
            budget -= used
            if part_open:
                ended = False
                break
        return RunLogs(
            run_id=run_id, text="".join(pieces), truncated=truncated, cursor=position.encode(run_id), ended=ended
        )

    def _names(self, run_id: str) -> tuple[list[str], bool]:
        """The run's parts in the order they began ("" for a run's only part), and whether
        that is all of them."""
        s3 = aws.client("s3")
        try:
            s3.head_object(Bucket=self.bucket, Key=self.key(run_id, ""))
            return [""], True
        except ClientError as error:  # no single part: a flow's steps' or attempts', or none yet
            if aws.error_code(error) not in aws.MISSING_OBJECT_CODES:
                raise
        listed = s3.list_objects_v2(Bucket=self.bucket, Prefix=f"logs/{run_id}/", MaxKeys=MAX_PARTS)
        names = sorted(
            item["Key"].rsplit("/", 1)[1].removesuffix(".txt")
            for item in listed.get("Contents", [])
            if item["Key"].endswith(".txt")
        )
        return [name for name in names if PART_PATTERN.fullmatch(name)], not listed.get("IsTruncated")

    def _get(self, run_id: str, name: str, ended: bool) -> Part | None:
        try:
            kept = aws.client("s3").get_object(Bucket=self.bucket, Key=self.key(run_id, name))
        except ClientError as error:
            if aws.error_code(error) in aws.MISSING_OBJECT_CODES:
                return None
            raise
        metadata: dict[str, Any] = kept.get("Metadata", {})
        offset = metadata.get("offset", "0")
        data = kept["Body"].read()
        if not offset.isdigit():  # kept before parts said where they begin
            offset = str(1 if metadata.get("truncated") == "true" else 0)
        return Part(name, data, int(offset), metadata.get("open") == "true" and not ended)


def _whole_characters(data: bytes, final: bool) -> tuple[str, int]:
    """The text of `data`, and how many of its bytes that is: of a part still being written,
    an unfinished character at the end waits for the next read."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="ignore")
    text = decoder.decode(data, final=final)
    pending = decoder.getstate()[0]
    return text, len(data) - len(pending)


class LiveRun:
    """What the worker keeps of a call while it runs, for the run it serves: the call's part
    of the run's logs, rewritten when it printed more, and the task's progress, written at most
    every PROGRESS_WRITE_SECONDS; both once more as the call ends, before the run is seen ended.
    It also tells the call to stop when the run is cancelled. `run_id` None: a call that
    serves no run (a step of a flow started outside the API) keeps nothing."""

    def __init__(
        self, store: RunStore, logs: LogStore | None, run_id: str | None, part: str, attempt: int | None
    ) -> None:
        self.store, self.logs, self.run_id, self.part, self.attempt = store, logs, run_id, part, attempt
        self._kept_to = 0  # where the output kept so far ends
        self._unwritten: Progress | None = None
        self._written_at = -math.inf

    def watch(self) -> Watch:
        run_id, store = self.run_id, self.store
        if run_id is None:
            return Watch()
        return Watch(
            cancelled=lambda: store.status_of(run_id) is RunStatus.CANCELLED, tick=self._tick, progress=self._progress
        )

    def close(self, tail: LogTail) -> None:
        try:
            self._write_progress()
        except Exception:  # the run's outcome matters more than its progress
            logger.exception("the run's last progress could not be kept")
        logs, run_id = self.logs, self.run_id
        if logs is None or run_id is None or not (tail.data or self._kept_to):
            return
        try:
            aws.patiently(lambda: logs.put(run_id, self.part, tail, open=False), PATIENCE_SECONDS)
        except Exception:  # the run's outcome matters more than its logs
            logger.exception("the run's logs could not be kept")

    def _progress(self, report: Progress) -> None:
        self._unwritten = report
        if time.monotonic() - self._written_at >= PROGRESS_WRITE_SECONDS:
            self._write_progress()

    def _tick(self, tail: LogTail) -> None:
        if self._unwritten is not None and time.monotonic() - self._written_at >= PROGRESS_WRITE_SECONDS:
            self._write_progress()
        end = tail.offset + len(tail.data)
        if self.logs is not None and self.run_id is not None and end > self._kept_to:
            self.logs.put(self.run_id, self.part, tail, open=True)
            self._kept_to = end

    def _write_progress(self) -> None:
        report, self._unwritten = self._unwritten, None
        if report is not None and self.run_id is not None:
            self._written_at = time.monotonic()
            self.store.set_progress(self.run_id, report, self.attempt)
