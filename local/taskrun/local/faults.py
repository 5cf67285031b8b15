"""Faults local mode can inject, so that tests can show what a run comes to when AWS
misbehaves: a function's invocations throttled, an asynchronous invocation delivered twice
(Lambda's asynchronous invokes are at least once), a table's writes throttled.

A fault is armed for a target (a function or table name) and hits every `every`-th matching
call until it has hit `times` calls (or until cleared)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

Kind = Literal["throttle", "duplicate", "throttle_writes"]


@dataclass
class _Armed:
    times: int
    every: int
    seen: int = 0
    hits: int = 0


class Faults:
    def __init__(self) -> None:
        self._armed: dict[tuple[Kind, str], _Armed] = {}
        self._lock = threading.Lock()

    def inject(self, kind: Kind, target: str, times: int = 1, every: int = 1) -> None:
        with self._lock:
            self._armed[(kind, target)] = _Armed(times=times, every=max(1, every))

    def clear(self) -> dict[tuple[Kind, str], int]:
        """Disarm everything; return how many calls each fault hit."""
        with self._lock:
            hits = {key: armed.hits for key, armed in self._armed.items()}
            self._armed.clear()
            return hits

    def hits(self, kind: Kind, target: str) -> int:
        with self._lock:
            armed = self._armed.get((kind, target))
            return armed.hits if armed else 0

    def strikes(self, kind: Kind, target: str) -> bool:
        """Whether this call is one the fault hits."""
        if not self._armed:
            return False
        with self._lock:
            armed = self._armed.get((kind, target))
            if armed is None or armed.hits >= armed.times:
                return False
            armed.seen += 1
            if armed.seen % armed.every:
                return False
            armed.hits += 1
            return True
