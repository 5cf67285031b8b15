"""Run control through HTTP on the local stack: cancels that stop the task's code, tags,
delays and expiry, retries with backoff, re-runs and batches."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx


def started(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = api.post("/v1/runs", json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def waited(api: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    """The run once it has ended (several waits of the API's own cap)."""
    deadline = time.monotonic() + timeout
    while True:
        run = api.get(f"/v1/runs/{run_id}", params={"wait": "true", "wait_timeout": 10}).json()
        if run["is_done"] or time.monotonic() > deadline:
            return dict(run)


def until(check: Any, timeout: float = 30, every: float = 0.1) -> Any:
    """The first truthy answer of `check`, asked until `timeout`; the last answer otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(every)


def settled(path: Path, quiet: float = 1.5, timeout: float = 20) -> list[str]:
    """The lines of a file once it has stopped growing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    seen = path.read_text() if path.exists() else ""
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = path.read_text() if path.exists() else ""
        if now == seen:
            break
        seen = now
    return seen.splitlines()


def test_a_cancel_stops_the_running_code_and_keeps_what_it_logged(api: httpx.Client, tmp_path: Path) -> None:
    # Given a script that ticks into a file ten times a second, running
    marks = tmp_path / "ticks"
    run = started(api, {"task_id": "control/ticker", "arguments": {"marks": str(marks)}})
    assert until(lambda: marks.exists() and len(marks.read_text().splitlines()) >= 5)
    # When it is cancelled
    cancelled = api.post(f"/v1/runs/{run['run_id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    # Then its code stops: the file stops growing, far short of the task's end
    ticks = settled(marks)
    assert "done" not in ticks and len(ticks) < 100
    # and the run stays cancelled, with what the task printed before it was stopped
    logs = until(lambda: api.get(f"/v1/runs/{run['run_id']}/logs").json()["text"])
    assert "tick 0\n" in logs and f"tick {int(ticks[-1])}" in logs
    assert f"tick {int(ticks[-1]) + 2}" not in logs
    final = api.get(f"/v1/runs/{run['run_id']}").json()
    assert final["status"] == "cancelled" and final["error"]["type"] == "cancelled"
