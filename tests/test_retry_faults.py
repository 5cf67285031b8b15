"""Retries under faults, on the local stack: a worker killed during an attempt or while the run
waits for its next one, a retry's wake delivered twice, cancels racing retries. For every run:
it ends exactly once, none is lost, and no attempt runs twice (each attempt leaves a mark).

Each test prints its counts (`pytest -s tests/test_retry_faults.py`)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskrun.local.stack import LocalStack
from taskrun.models import RunAttempt, RunStatus, utcnow
from taskrun.runs.service import RunRequest, RunService
from taskrun.runs.sweeper import GRACE_SECONDS
from taskrun.runtime import run_service
from tests.conftest import load_event
from tests.test_lifecycle import HeldDispatcher
from tests.test_run_control import marks_in, started, until, waited


@pytest.fixture(autouse=True)
def no_faults_left(stack: LocalStack) -> Iterator[None]:
    yield
    stack.emulator.runtime.faults.clear()


def test_a_worker_killed_during_an_attempt_is_retried_and_runs_on(api: httpx.Client, tmp_path: Path) -> None:
    # Given a task whose first attempt kills the worker's sandbox (the Lambda dies with it)
    marks = tmp_path / "attempts"
    run = started(api, {"task_id": "control/fragile", "arguments": {"marks": str(marks)}})
    # Then the worker's on-failure destination puts the run back for its next attempt
    ended = waited(api, run["run_id"])
    assert ended["status"] == "succeeded" and ended["result"] == 2 and ended["attempt"] == 2
    (first,) = ended["attempts"]
    assert first["status"] == "failed" and first["error"]["message"].startswith("the worker failed")
    assert marks_in(marks) == 2


def test_sandboxes_killed_while_runs_wait_to_retry_lose_no_run(
    api: httpx.Client, stack: LocalStack, tmp_path: Path
) -> None:
    # Given runs whose first attempt failed, each then waiting 6 s for its next
    bodies = [
        {"task_id": "control/patient", "arguments": {"marks": str(tmp_path / str(n)), "failures": 1}} for n in range(6)
    ]
    run_ids = [started(api, body)["run_id"] for body in bodies]

    def all_failed_once() -> list[dict[str, Any]] | None:
        runs = [api.get(f"/v1/runs/{run_id}").json() for run_id in run_ids]
        return runs if all(run["attempts"] for run in runs) else None

    assert until(all_failed_once)
    # When every idle sandbox of the worker is killed meanwhile (nothing of a waiting run is in
    # one; a run whose wait has already ended keeps its busy sandbox, on a slow machine)
    pool = stack.emulator.runtime.pool("WorkerFunction")
    with pool._changed:  # no invocation takes a sandbox while they die
        doomed = list(pool._idle)
        for sandbox in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(sandbox.process.pid, signal.SIGKILL)
            sandbox.process.join(timeout=10)
    waiting = sum(run["status"] == "queued" for run in all_failed_once() or [])
    killed = sum(not sandbox.alive for sandbox in doomed)
    # Then every run still ends, succeeded at its second attempt, each attempt made once
    runs = [waited(api, run_id) for run_id in run_ids]
    print(f"\n  worker sandboxes killed while {waiting} of {len(runs)} runs waited: {killed}")
    assert killed > 0
    assert [(run["status"], run["attempt"]) for run in runs] == [("succeeded", 2)] * len(runs)
    assert [marks_in(tmp_path / str(n)) for n in range(len(runs))] == [2] * len(runs)


def test_a_worker_dead_between_putting_a_run_back_and_starting_its_wait_leaves_no_run_to_the_sweeper(
    api: httpx.Client, stack: LocalStack, tmp_path: Path
) -> None:
    # Given a run whose first attempt failed and was put back for its next one, by a worker
    # that died before it started the wait (the dispatcher is held: nothing else runs it)
    live = run_service()
    held = RunService(store=live.store, dispatcher=HeldDispatcher(), catalog=live.catalog, settings=live.settings)
    marks = tmp_path / "attempts"
    marks.write_text("first\n")  # the first attempt's mark
    run = held.start(RunRequest(task_id="control/patient", arguments={"marks": str(marks), "failures": 1}))
    began = utcnow()
    live.store.mark_running(run.run_id, began)
    failed = RunAttempt(attempt=1, status=RunStatus.FAILED, started_at=began, ended_at=utcnow())
    live.store.requeue(run.run_id, [failed], utcnow())
    # When Lambda reports the worker's invocation failed, to the on-failure destination
    event = load_event("worker_failed")
    event["requestPayload"] = {"run_id": run.run_id}
    event["responsePayload"] = {"errorType": "Runtime.ExitError", "errorMessage": "signal: killed"}
    stack.emulator.runtime.invoke_async("WorkerFailedFunction", event)
    # Then the destination starts the run's wait, and the second attempt runs well before the
    # sweeper would have found the run overdue
    ended = waited(api, run.run_id, timeout=GRACE_SECONDS / 2)
    assert (ended["status"], ended["attempt"], ended["result"]) == ("succeeded", 2, 2)
    assert marks_in(marks) == 2


def test_a_retry_s_wake_delivered_twice_runs_the_attempt_once(
    api: httpx.Client, stack: LocalStack, tmp_path: Path
) -> None:
    # Given every invocation of the worker delivered twice (Lambda's async invokes are at least once)
    stack.emulator.runtime.faults.inject("duplicate", "WorkerFunction", times=1_000)
    bodies = [
        {"task_id": "control/stubborn", "arguments": {"marks": str(tmp_path / str(n)), "failures": 2}}
        for n in range(10)
    ]
    run_ids = [started(api, body)["run_id"] for body in bodies]
    runs = [waited(api, run_id) for run_id in run_ids]
    duplicates = stack.emulator.runtime.faults.hits("duplicate", "WorkerFunction")
    attempts = [marks_in(tmp_path / str(n)) for n in range(len(runs))]
    print(f"\n  deliveries made twice: {duplicates}; attempts per run: {attempts}")
    # Then each run succeeded at its third attempt, and no attempt ran twice
    assert duplicates >= 2 * len(runs)
    assert [(run["status"], run["attempt"]) for run in runs] == [("succeeded", 3)] * len(runs)
    assert attempts == [3] * len(runs)


def test_cancels_racing_retries_end_each_run_once_and_start_no_attempt_after(api: httpx.Client, tmp_path: Path) -> None:
    # Given runs that fail every attempt, napping 0.2 s each and waiting 0.3 s between them
    runs: dict[str, Path] = {}
    for n in range(12):
        marks = tmp_path / str(n)
        body = {"task_id": "control/stubborn", "arguments": {"marks": str(marks), "nap": 0.2}}
        runs[started(api, body)["run_id"]] = marks
    # When each is cancelled at a random moment of its attempts and waits
    answers: dict[str, tuple[int, float]] = {}

    def cancel(run_id: str, after: float) -> None:
        time.sleep(after)
        answer = api.post(f"/v1/runs/{run_id}/cancel")
        answers[run_id] = (answer.status_code, time.time())

    threads = [threading.Thread(target=cancel, args=(run_id, random.uniform(0, 3.5))) for run_id in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ended = {run_id: waited(api, run_id) for run_id in runs}
    counted = {run_id: marks_in(marks) for run_id, marks in runs.items()}
    time.sleep(1.5)  # past any wake that was on its way
    # Then a run whose cancel was answered 200 is cancelled, and no attempt was made after
    # it: each attempt whose code ran was claimed before (a claimed attempt is stopped within
    # a second, maybe before its code began); a cancel answered 409 found it failed, out of retries
    won = 0
    for run_id, run in ended.items():
        status, _ = answers[run_id]
        attempts = marks_in(runs[run_id])
        assert attempts == counted[run_id], f"{run_id}: an attempt began after the run ended"
        if status == 200:
            won += 1
            assert run["status"] == "cancelled", run
            assert run["attempt"] - 1 <= attempts <= run["attempt"]
        else:
            assert status == 409 and run["status"] == "failed" and attempts == 4
        assert api.get(f"/v1/runs/{run_id}").json()["status"] == run["status"]  # ended once, and stays so
    print(f"\n  cancels that came first: {won}, that found the run ended: {len(runs) - won}")
