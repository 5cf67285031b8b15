"""Many clients at once: every answer is its own request's, every run ends once, and each
log line belongs to the invocation that wrote it."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from taskrun.local.stack import LocalStack
from tests.conftest import API_KEY

STARTS = 300
CLIENTS = 50


@pytest.fixture
def busy_switching() -> Iterator[None]:
    """Threads of the stack's process switch far more often than by default, so races show."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    yield
    sys.setswitchinterval(before)


def test_300_starts_from_50_clients_all_end_each_with_its_own_arguments(
    base_url: str, stack: LocalStack, busy_switching: None
) -> None:
    # Given 50 clients starting 300 runs at once, a third of them waiting for the result,
    # each run told apart by its arguments
    local = threading.local()
    tag = f"load-{threading.get_ident()}"

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base_url, headers={"X-API-KEY": API_KEY}, timeout=120)
        return local.client  # type: ignore[no-any-return]

    def patiently(method: str, url: str, **options: object) -> httpx.Response:
        """As a well-behaved client sends: a 429 (the stack past its capacity) is sent again
        after its Retry-After, a start under the same Idempotency-Key, so never twice."""
        for _ in range(60):
            response = client().request(method, url, **options)  # type: ignore[arg-type]
            if response.status_code != 429:
                return response
            time.sleep(float(response.headers.get("Retry-After", "1")))
        return response

    def start(index: int) -> tuple[int, httpx.Response]:
        body = {"task_id": "examples/echo", "arguments": {"message": f"{tag}-{index}", "note": str(index)}}
        # the waiting third waits up to 2 s: long enough to see most runs end, short enough that
        # waiting requests do not hold every StartRun sandbox for long
        waiting = {"wait": True, "wait_timeout": 2} if index % 3 == 0 else {"wait": False}
        once = {"Idempotency-Key": f"{tag}-{index}"}
        return index, patiently("POST", "/v1/runs", json={**body, **waiting}, headers=once)

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        answers = list(pool.map(start, range(STARTS)))

    # Then every answer is a 201 carrying its own request's arguments (and result, where
    # the wait saw the run end)
    for index, response in answers:
        assert response.status_code in (200, 201), response.text  # 200: a retry answered with the first run
        run = response.json()
        assert run["arguments"] == {"message": f"{tag}-{index}", "note": str(index)}
        if run["status"] == "succeeded":
            assert run["result"] == run["arguments"]

    # And every run ends succeeded with its own result, none stuck
    def ended(item: tuple[int, httpx.Response]) -> dict:
        run_id = item[1].json()["run_id"]
        return patiently("GET", f"/v1/runs/{run_id}", params={"wait": "true", "wait_timeout": 25}).json()

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        runs = list(pool.map(ended, answers))
    assert all(run["status"] == "succeeded" for run in runs)
    assert all(run["result"] == run["arguments"] for run in runs)

    # And there is exactly one run per request: nothing duplicated, nothing lost
    listed: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"task_id": "examples/echo", "limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = patiently("GET", "/v1/runs", params=params).json()
        listed += [run["run_id"] for run in page["runs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    mine = {run["run_id"] for run in runs}
    assert len(mine) == STARTS
    assert mine <= set(listed)

    # And each log line of these runs carries the function, invocation and run that wrote it
    logged = [
        (function, json.loads(line)) for function, line in list(stack.emulator.runtime.logs) if line.startswith("{")
    ]
    started = [
        entry for function, entry in logged if entry.get("message") == "run started" and entry.get("run_id") in mine
    ]
    finished = [
        entry for function, entry in logged if entry.get("message") == "run ended" and entry.get("run_id") in mine
    ]
    assert started and finished
    assert {entry["function_name"] for entry in started} == {"StartRunFunction"}
    assert {entry["function_name"] for entry in finished} == {"WorkerFunction"}
    for function, entry in logged:
        if entry.get("function_name"):
            assert entry["function_name"] == function
    request_ids = [entry["function_request_id"] for entry in started]
    assert len(set(request_ids)) == len(request_ids)  # one invocation per start
