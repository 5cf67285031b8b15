"""The run lifecycle's guarantees, on the real store (DynamoDB on the emulator)."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from taskrun.errors import RunConflict
from taskrun.local.stack import LocalStack
from taskrun.models import ErrorType, RunError, RunStatus, utcnow
from taskrun.runs.dispatch import LambdaDispatcher
from taskrun.runs.scripts import die_with_parent
from taskrun.runs.service import RunRequest, RunService
from taskrun.runs.store import Ending
from taskrun.runs.worker import Worker
from taskrun.runtime import run_service


class HeldDispatcher:
    """Keeps runs pending, so a test decides when (and whether) the worker sees them."""

    def dispatch(self, run: object) -> None:
        return None


@pytest.fixture
def held(stack: LocalStack) -> RunService:
    live = run_service()
    return RunService(store=live.store, dispatcher=HeldDispatcher(), catalog=live.catalog, settings=live.settings)


def test_an_ended_run_never_changes(held: RunService) -> None:
    run = held.start(RunRequest(task_id="examples/greet", arguments={"name": "x"}))
    store = held.store
    store.finish(run.run_id, Ending(RunStatus.SUCCEEDED, utcnow(), result={"ok": True}))

    with pytest.raises(RunConflict) as conflict:
        store.finish(run.run_id, Ending(RunStatus.FAILED, utcnow()))
    assert conflict.value.status == "succeeded"
    with pytest.raises(RunConflict):
        store.mark_running(run.run_id, utcnow())
    assert store.get(run.run_id).result == {"ok": True}


def race_to_finish(held: RunService, run_id: str) -> list[RunStatus]:
    """Cancel and completion write at the same instant; return the statuses whose write won."""
    winners: list[RunStatus] = []
    barrier = threading.Barrier(2)

    def finish(status: RunStatus) -> None:
        barrier.wait()
        try:
            held.store.finish(run_id, Ending(status, utcnow() + timedelta(milliseconds=5)))
            winners.append(status)
        except RunConflict:
            pass

    threads = [threading.Thread(target=finish, args=(s,)) for s in (RunStatus.CANCELLED, RunStatus.SUCCEEDED)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return winners


def test_cancel_racing_completion_has_exactly_one_winner(held: RunService) -> None:
    for _ in range(10):
        run = held.start(RunRequest(task_id="examples/greet", arguments={"name": "x"}))
        held.store.mark_running(run.run_id, utcnow())

        winners = race_to_finish(held, run.run_id)

        assert len(winners) == 1
        assert held.store.get(run.run_id).status == winners[0]


def test_a_cancelled_pending_run_is_never_executed(held: RunService) -> None:
    run = held.start(RunRequest(task_id="examples/greet", arguments={"name": "x"}))
    held.cancel(run.run_id)

    after = Worker(store=held.store, catalog=held.catalog).execute(run.run_id)

    assert after.status == "cancelled"
    assert after.started_at is None and after.result is None


def test_a_dispatch_failure_ends_the_run_with_dispatch_error(stack: LocalStack) -> None:
    live = run_service()
    broken = RunService(
        store=live.store,
        dispatcher=LambdaDispatcher("no-such-worker"),
        catalog=live.catalog,
        settings=live.settings,
    )
    run = broken.start(RunRequest(task_id="examples/greet", arguments={"name": "x"}))

    assert run.status == "failed"
    assert run.error is not None and run.error.type == ErrorType.DISPATCH_ERROR
    assert live.store.get(run.run_id).status == "failed"


def test_a_task_missing_on_the_worker_fails_the_run_instead_of_leaving_it_running(held: RunService) -> None:
    run = held.start(RunRequest(task_id="examples/weighted", revision="2"))
    stale = RunService(store=held.store, dispatcher=HeldDispatcher(), catalog=held.catalog, settings=held.settings)
    definition = stale.catalog.get("examples/weighted")
    revision = definition.revisions.pop("2")
    try:
        after = Worker(store=held.store, catalog=held.catalog).execute(run.run_id)
    finally:
        definition.revisions["2"] = revision
    assert after.status == "failed"
    assert after.error == RunError(type=ErrorType.NOT_FOUND, message=after.error.message if after.error else "")


def test_a_task_that_kills_its_sandbox_fails_its_run_and_the_stack_goes_on(api: httpx.Client) -> None:
    # Given a task that ends its process at once (as a crashing native library would)
    run = api.post("/v1/runs", json={"task_id": "team/exit", "arguments": {"code": 3}, "wait": True}).json()

    # Then its run fails, saying why (the script ran in a process of its own)
    assert run["status"] == "failed", run
    assert run["error"]["type"] == "execution_error"
    assert run["error"]["exception_type"] == "TaskProcessExited"
    assert "the task ended its process (exit status 3)" in run["error"]["message"]

    # And the rest of the stack goes on: the next run gets a new sandbox
    again = api.post("/v1/runs", json={"task_id": "team/add", "arguments": {"a": 1, "b": 2}, "wait": True}).json()
    assert again["status"] == "succeeded" and again["result"] == 3


def test_a_task_process_whose_sandbox_went_before_it_began_ends_at_once() -> None:
    # A task's process is forked by its sandbox; the kernel kills it when the sandbox goes,
    # but not if the sandbox went between the fork and the child's asking for that
    fork = multiprocessing.get_context("fork")
    # Given a task process whose parent is still the sandbox that started it: it goes on
    kept = fork.Process(target=die_with_parent, args=(os.getpid(),))
    kept.start()
    kept.join(10)
    assert kept.exitcode == 0
    # When its parent is no longer that sandbox (it went, and the process was handed on)
    orphan = fork.Process(target=die_with_parent, args=(-1,))
    orphan.start()
    orphan.join(10)
    # Then it ends at once rather than run on
    assert orphan.exitcode == 1


def test_no_code_of_a_timed_out_script_runs_on(api: httpx.Client, tmp_path: Path) -> None:
    # Given a script that would leave a mark if it ran past its 1 s timeout
    marker = tmp_path / "overran"
    arguments = {"marker": str(marker), "seconds": 1.5}
    run = api.post("/v1/runs", json={"task_id": "team/overrun", "arguments": arguments, "wait": True}).json()

    # Then the run ends timed_out, and its sandbox is stopped with the code in it
    assert run["status"] == "timed_out", run
    time.sleep(2)
    assert not marker.exists()


def test_a_waited_run_whose_worker_dies_ends_failed_within_the_wait(api: httpx.Client, tmp_path: Path) -> None:
    # Given a waited run (run by the worker while the request waits) whose task kills the
    # worker's sandbox, so the invocation itself fails
    body = {"task_id": "fault/act", "arguments": {"marks": str(tmp_path), "act": "die"}, "wait": True}
    run = api.post("/v1/runs", json=body).json()
    # Then the answer is the run ended failed, saying why, as the on-failure destination says
    assert run["status"] == "failed", run
    assert run["error"]["type"] == "execution_error"
    assert run["error"]["message"].startswith("the worker failed: ")
    assert len(list(tmp_path.iterdir())) == 1  # the task ran once


def test_a_waited_run_refused_by_a_throttled_worker_is_handed_over_and_runs_once(
    api: httpx.Client, stack: LocalStack, tmp_path: Path
) -> None:
    faults = stack.emulator.runtime.faults
    # Given the worker refuses its next invocation (throttled)
    faults.inject("throttle", "WorkerFunction", times=1)
    try:
        body = {"task_id": "fault/act", "arguments": {"marks": str(tmp_path)}, "wait": True, "wait_timeout": 20}
        run = api.post("/v1/runs", json=body).json()
    finally:
        hits = faults.hits("throttle", "WorkerFunction")
        faults.clear()
    # Then the waited run's synchronous invoke was refused, the run handed over
    # asynchronously, and it succeeded, its code run once
    assert hits == 1
    assert run["status"] == "succeeded", run
    assert len(list(tmp_path.iterdir())) == 1
