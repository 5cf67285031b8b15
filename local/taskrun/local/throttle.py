"""API Gateway's throttling, imitated: token buckets for the stage and for each key.

API Gateway throttles with a token bucket (a steady rate, and a burst the bucket holds);
`limits` and its kin count requests in windows instead, which answer a burst differently,
so the bucket is written here.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """`rate` tokens a second, at most `burst` held; a request takes one."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _at: float = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._tokens = self.burst
        self._at = self.clock()

    def take(self) -> float:
        """Take a token: 0 if one was there, else the seconds until one will be (none taken)."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1:
                self._tokens -= 1
                return 0.0
            return (1 - self._tokens) / self.rate


@dataclass
class Throttle:
    """The stage's bucket, and one bucket a usage-plan key, at its plan's rate and burst
    unless `key_rate` and `key_burst` are set; each call answers 0 when the request may go,
    else the Retry-After seconds."""

    stage_rate: float
    stage_burst: float
    key_rate: float | None = None
    key_burst: float | None = None
    clock: Callable[[], float] = time.monotonic
    MAX_KEYS = 10_000

    def __post_init__(self) -> None:
        self.stage = TokenBucket(self.stage_rate, self.stage_burst, self.clock)
        self._keys: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def for_stage(self) -> int:
        return _whole_seconds(self.stage.take())

    def for_key(self, usage_key: str, rate: float, burst: float) -> int:
        rate, burst = self.key_rate or rate, self.key_burst or burst
        with self._lock:
            bucket = self._keys.get(usage_key)
            if bucket is None or (bucket.rate, bucket.burst) != (rate, burst):  # new, or its plan changed
                if len(self._keys) >= self.MAX_KEYS:
                    self._keys.clear()
                bucket = self._keys[usage_key] = TokenBucket(rate, burst, self.clock)
        return _whole_seconds(bucket.take())


def _whole_seconds(wait: float) -> int:
    """Retry-After in whole seconds (at least 1 when throttled)."""
    return 0 if wait <= 0 else max(1, math.ceil(wait))
