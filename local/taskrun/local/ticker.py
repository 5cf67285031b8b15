"""A background loop of local mode: call something every so often until stopped."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable


class Ticker:
    """Calls `tick` every `seconds` on its own daemon thread until stopped. With a `wake`
    event, a round waits for the event as well (at most `idle_seconds`): a loop that has
    nothing to do until something happens sleeps until it does."""

    def __init__(
        self,
        seconds: float,
        tick: Callable[[], None],
        name: str,
        wake: threading.Event | None = None,
        idle_seconds: float = 1.0,
    ) -> None:
        self.seconds = seconds
        self.tick = tick
        self.wake = wake
        self.idle_seconds = idle_seconds
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """No tick starts after this; one under way gets a moment to end (the thread is a
        daemon: a tick stuck on a stopping emulator never holds the stack's exit)."""
        self._stopped.set()
        if self.wake is not None:
            self.wake.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=0.3)

    def _run(self) -> None:
        while not self._stopped.wait(self.seconds):
            if self.wake is not None:
                self.wake.wait(self.idle_seconds)
                self.wake.clear()  # before the round: what comes during it wakes the next one
                if self._stopped.is_set():
                    return
            try:
                self.tick()
            except Exception as error:  # one bad round must not end the loop
                if not self._stopped.is_set():  # past a stop, the emulator may be gone: say nothing
                    print(f"{self._thread.name}: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
