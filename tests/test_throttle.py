"""Throttling, as API Gateway does it: a token bucket for the stage and one for each key;
past either, 429 problem with Retry-After. A request that finds every sandbox of its
function busy is throttled within a few seconds, never held until the gateway's 504."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from taskrun.local.stack import LocalStack
from taskrun.local.throttle import Throttle
from tests.conftest import GENEROUS


@pytest.fixture
def use(stack: LocalStack) -> Iterator[Callable[[Throttle], None]]:
    """Give the stack other limits for one test; the suite's come back afterwards."""

    def given(throttle: Throttle) -> None:
        stack.gateway.throttle = throttle

    yield given
    stack.gateway.throttle = GENEROUS


def new_key(api: httpx.Client) -> dict[str, str]:
    return {"X-API-KEY": api.post("/v1/keys", json={"name": "busy"}).json()["key"]}


def test_a_key_past_its_rate_is_429_with_retry_after_while_another_key_goes_on(
    api: httpx.Client, anonymous: httpx.Client, use: Callable[[Throttle], None]
) -> None:
    busy, calm = new_key(api), new_key(api)
    # Given each key may send 3 requests at once, then one every 5 s
    use(Throttle(stage_rate=10_000, stage_burst=10_000, key_rate=0.2, key_burst=3))
    began = time.monotonic()
    # When one key sends 10 requests in a row
    answers = [anonymous.get("/v1/tasks", headers=busy) for _ in range(10)]
    elapsed = time.monotonic() - began
    # Then its burst is answered and the rest throttled: 429 problems saying when to retry
    taken = [answer for answer in answers if answer.status_code == 200]
    refused = [answer for answer in answers if answer.status_code == 429]
    assert len(taken) + len(refused) == 10
    assert 3 <= len(taken) <= 3 + int(elapsed * 0.2) + 1
    assert refused, "no request was throttled"
    for answer in refused:
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["status"] == 429
        assert 1 <= int(answer.headers["Retry-After"]) <= 5
    # while another key is not slowed by it
    assert anonymous.get("/v1/tasks", headers=calm).status_code == 200


def test_the_stage_past_its_rate_throttles_every_caller(
    anonymous: httpx.Client, use: Callable[[Throttle], None]
) -> None:
    use(Throttle(stage_rate=0.2, stage_burst=3, key_rate=10_000, key_burst=10_000))
    statuses = [anonymous.get("/v1/health").status_code for _ in range(8)]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses
    use(GENEROUS)
    assert anonymous.get("/v1/health").status_code == 200


def test_a_request_finding_every_sandbox_busy_is_429_not_a_504(
    stack: LocalStack, api: httpx.Client, anonymous: httpx.Client
) -> None:
    # Given the run-reading function allowed one sandbox, held by a request waiting 12 s
    run = api.post("/v1/runs", json={"task_id": "examples/sleep", "arguments": {"seconds": 20}}).json()
    pool = stack.emulator.runtime.pool("GetRunFunction")
    limit, pool.limit = pool.limit, 1
    try:
        assert api.get(f"/v1/runs/{run['run_id']}").status_code == 200  # one warm sandbox
        with ThreadPoolExecutor(1) as waiter:
            held = waiter.submit(api.get, f"/v1/runs/{run['run_id']}", params={"wait": "true", "wait_timeout": 12})
            time.sleep(1)
            # When another request for it comes
            answer = anonymous.get(f"/v1/runs/{run['run_id']}", headers={"X-API-KEY": api.headers["X-API-KEY"]})
            # Then it is throttled (after the short wait for a sandbox), not held to the gateway's 29 s
            assert answer.status_code == 429, answer.text
            assert answer.headers["Retry-After"] == "1"
            assert held.result().status_code == 200
    finally:
        pool.limit = limit
        api.post(f"/v1/runs/{run['run_id']}/cancel")
