"""The emulator keeps DynamoDB's guarantees that the run lifecycle relies on."""

from __future__ import annotations

import threading

from taskrun.local.stack import LocalStack
from taskrun.models import RunStatus, utcnow
from taskrun.runtime import run_service
from taskrun.service import RunRequest, RunService
from taskrun.store import Ending
from tests.test_lifecycle import HeldDispatcher


def test_a_reader_never_sees_half_of_a_run_ending(stack: LocalStack) -> None:
    # Given runs that end while a waiting caller keeps reading them
    live = run_service()
    held = RunService(store=live.store, dispatcher=HeldDispatcher(), catalog=live.catalog, settings=live.settings)
    halves: list[str] = []
    for _ in range(30):
        run = held.start(RunRequest(task_id="examples/greet", arguments={"name": "x"}))
        held.store.mark_running(run.run_id, utcnow())
        done = threading.Event()

        def read(run_id: str = run.run_id, done: threading.Event = done) -> None:
            while not done.is_set():
                seen = held.store.get(run_id)
                if seen.status is RunStatus.SUCCEEDED and (seen.result is None or seen.ended_at is None):
                    halves.append(run_id)

        reader = threading.Thread(target=read)
        reader.start()
        held.store.finish(run.run_id, Ending(RunStatus.SUCCEEDED, utcnow(), result={"n": 1}, usage={"t": 1}))
        done.set()
        reader.join()

    # Then no read saw the new status without the result that came with it
    assert halves == []
