"""What a running task holds: its `RunContext` (run id, time left, usage, progress, its
secrets), and a concurrency `Limit` several tasks may share."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from taskrun.models import Progress, utcnow

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_TIMEOUT = 60
MAX_TIMEOUT = 900
MAX_CONCURRENCY = 1000  # runs one limit holds at once (the limit's item lists them)


@dataclass(frozen=True)
class Limit:
    """A concurrency limit shared by name: `@task(..., concurrency=Limit("stripe", 20))` on
    several tasks lets at most 20 of their runs execute at once, all tasks together."""

    name: str
    size: int

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.:/-]{1,64}", self.name):
            raise ValueError(f"limit name {self.name!r}: 1 to 64 letters, digits or _.:/-")


PROGRESS_SEND_SECONDS = 0.25  # a script's progress reports go to the worker at most this often


class RunContext:
    """Handed to a script that declares a parameter of this type.

    It tells the script which run it serves and how long it has left, and collects the
    usage (tokens, calls, ...) the script reports, which the run record keeps.
    """

    def __init__(
        self,
        run_id: str,
        task_id: str,
        revision: str,
        deadline: float,
        secrets: Mapping[str, str] | None = None,
        report: Callable[[Progress], None] | None = None,
    ) -> None:
        self.run_id = run_id
        self.task_id = task_id
        self.revision = revision
        self._deadline = deadline
        self._secrets = dict(secrets or {})
        self._usage: dict[str, float] = {}
        self._lock = threading.Lock()
        self._report = report  # hands a progress report on to the worker
        self._unsent: Progress | None = None
        self._sent_at = -PROGRESS_SEND_SECONDS

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Say how far the task has come: `done` units of `total` (if known), and what it is
        doing now. The run shows the last report (`progress`) while it runs and after; reports
        come through at most every second or so, the last one always."""
        try:
            report = Progress.reported(done, total, message, utcnow())
        except ValidationError as invalid:
            problems = "; ".join(f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in invalid.errors())
            raise ValueError(f"progress({done!r}, {total!r}): {problems}") from None
        with self._lock:
            self._unsent = report
            if time.monotonic() - self._sent_at >= PROGRESS_SEND_SECONDS:
                self._send()

    def close(self) -> None:
        """As the call ends: hand on the last report, if it has not gone yet, and none after."""
        with self._lock:
            self._send()
            self._report = None

    def _send(self) -> None:
        if self._unsent is not None and self._report is not None:
            self._report(self._unsent)
            self._unsent, self._sent_at = None, time.monotonic()

    def remaining_seconds(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    def secret(self, name: str) -> str:
        """The value of a secret the task declared (`@task(secrets=[...])`); it is masked in
        the run's logs. A secret the task did not declare is a KeyError."""
        if name not in self._secrets:
            raise KeyError(f"secret {name!r} is not one the task declares (@task(secrets=[...]))")
        return self._secrets[name]

    def report_usage(self, **amounts: float) -> None:
        """Add to the run's usage counters, for example `report_usage(input_tokens=120)`."""
        with self._lock:
            for name, amount in amounts.items():
                self._usage[name] = self._usage.get(name, 0) + amount

    @property
    def usage(self) -> dict[str, float]:
        with self._lock:
            return dict(self._usage)
