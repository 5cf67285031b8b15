"""Throttling, as API Gateway does it: a token bucket for the stage and one for each key's
usage-plan key, at the usage plan's rate; past either, 429 problem with Retry-After. Each
key made over the API has a usage-plan key of its own, deleted when the key is revoked; keys
written straight into the table share one. A request that finds every sandbox of its
function busy is throttled within a few seconds, never held until the gateway's 504."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
import pytest
from botocore.stub import Stubber

from taskrun.access.keys import DynamoKeyStore, new_key
from taskrun.access.usage import UsagePlan
from taskrun.errors import Unavailable
from taskrun.local.stack import LocalStack
from taskrun.local.throttle import Throttle
from taskrun.settings import get_settings
from tests.conftest import GENEROUS

UNLIMITED_STAGE = Throttle(stage_rate=10_000, stage_burst=10_000)  # each key at its usage plan's rate


@pytest.fixture
def use(stack: LocalStack) -> Iterator[Callable[[Throttle], None]]:
    """Give the stack other limits for one test; the suite's come back afterwards."""

    def given(throttle: Throttle) -> None:
        stack.gateway.throttle = throttle

    yield given
    stack.gateway.throttle = GENEROUS


def made_key(api: httpx.Client) -> dict[str, str]:
    return {"X-API-KEY": api.post("/v1/keys", json={"name": "busy"}).json()["key"]}


@pytest.fixture
def apigateway() -> Any:
    return boto3.client("apigateway")


@pytest.fixture
def plan_id(apigateway: Any) -> str:
    return UsagePlan(get_settings().usage_plan, apigateway).plan_id


@pytest.fixture
def plan_throttle(apigateway: Any, plan_id: str) -> Iterator[Callable[[int, int], None]]:
    """Give the keys' usage plan another rate and burst for one test (as `aws apigateway
    update-usage-plan` would); the plan's own come back afterwards."""
    before = apigateway.get_usage_plan(usagePlanId=plan_id)["throttle"]

    def given(rate: int, burst: int) -> None:
        apigateway.update_usage_plan(
            usagePlanId=plan_id,
            patchOperations=[
                {"op": "replace", "path": "/throttle/rateLimit", "value": str(rate)},
                {"op": "replace", "path": "/throttle/burstLimit", "value": str(burst)},
            ],
        )

    yield given
    given(int(before["rateLimit"]), int(before["burstLimit"]))


def test_a_key_past_its_usage_plans_rate_is_429_with_retry_after_while_another_key_goes_on(
    api: httpx.Client,
    anonymous: httpx.Client,
    use: Callable[[Throttle], None],
    plan_throttle: Callable[[int, int], None],
) -> None:
    busy, calm = made_key(api), made_key(api)
    # Given the usage plan lets each key send 3 requests at once, then one a second
    use(UNLIMITED_STAGE)
    plan_throttle(1, 3)
    began = time.monotonic()
    # When one key sends 20 requests in a row
    answers = [anonymous.get("/v1/tasks", headers=busy) for _ in range(20)]
    elapsed = time.monotonic() - began
    # Then its burst is answered and the rest throttled: 429 problems saying when to retry
    taken = [answer for answer in answers if answer.status_code == 200]
    refused = [answer for answer in answers if answer.status_code == 429]
    assert len(taken) + len(refused) == 20, [answer.status_code for answer in answers]
    assert 3 <= len(taken) <= 3 + int(elapsed) + 1
    assert refused, "no request was throttled"
    for answer in refused:
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["status"] == 429
        assert answer.headers["Retry-After"] == "1"
    # while another key, with its own usage-plan key, is not slowed by it
    assert anonymous.get("/v1/tasks", headers=calm).status_code == 200


def test_each_key_made_has_its_own_usage_plan_key_which_revoking_deletes(
    api: httpx.Client, anonymous: httpx.Client, apigateway: Any, plan_id: str
) -> None:
    # Given a key made over the API, and used once (so an authorizer holds it)
    made = api.post("/v1/keys", json={"name": "planned"}).json()
    key = {"X-API-KEY": made["key"]}
    assert anonymous.get("/v1/tasks", headers=key).status_code == 200
    # Then the usage plan holds an API Gateway key named after it, whose value is not the key
    in_plan = apigateway.get_usage_plan_keys(usagePlanId=plan_id, nameQuery=made["key_id"])["items"]
    assert [entry["name"] for entry in in_plan] == [made["key_id"]]
    assert in_plan[0]["value"] != made["key"] and made["key"] not in str(api.get("/v1/keys").json())
    # When it is revoked
    assert api.delete(f"/v1/keys/{made['key_id']}").status_code == 200
    # Then its usage-plan key is gone and the very next request is refused, though the
    # authorizer still holds the key: API Gateway's 403 problem
    assert apigateway.get_usage_plan_keys(usagePlanId=plan_id, nameQuery=made["key_id"])["items"] == []
    refused = anonymous.get("/v1/tasks", headers=key)
    assert refused.status_code in (401, 403)
    assert refused.headers["content-type"] == "application/problem+json"


def test_keys_written_straight_into_the_table_share_one_usage_plan_key(
    api: httpx.Client,
    anonymous: httpx.Client,
    use: Callable[[Throttle], None],
    plan_throttle: Callable[[int, int], None],
) -> None:
    # Given two keys written into the keys table, as `taskrun keys create --table` does
    store = DynamoKeyStore(get_settings().keys_table)
    written = []
    for name in ("first", "second"):
        secret, record = new_key(name=name)
        store.put(record)
        written.append({"X-API-KEY": secret})
    calm = made_key(api)
    use(UNLIMITED_STAGE)
    plan_throttle(1, 4)
    # When each sends 6 requests, in turns
    began = time.monotonic()
    statuses = [anonymous.get("/v1/tasks", headers=written[i % 2]).status_code for i in range(12)]
    elapsed = time.monotonic() - began
    # Then they share one bucket of 4: together no more than the plan lets one key send
    assert set(statuses) <= {200, 429}
    assert 4 <= statuses.count(200) <= 4 + int(elapsed) + 1, statuses
    # while a key with its own usage-plan key goes on
    assert anonymous.get("/v1/tasks", headers=calm).status_code == 200


def test_api_gateway_refusing_the_usage_plan_key_leaves_no_api_key_behind() -> None:
    # Given API Gateway makes the API key but refuses to add it to the plan (its limit)
    client = boto3.client("apigateway")
    plan = UsagePlan("taskrun-keys", client)
    plan._plan_id = "plan123"
    _, record = new_key(name="limited")
    with Stubber(client) as stub:
        stub.add_response("create_api_key", {"id": "abc123"})
        stub.add_client_error("create_usage_plan_key", "LimitExceededException", "too many keys in the plan")
        stub.add_response("delete_api_key", {}, {"apiKey": "abc123"})
        # Then making the key fails with the reason, and the API key it made is deleted
        with pytest.raises(Unavailable, match="LimitExceededException: too many keys in the plan"):
            plan.enrol(record)
        stub.assert_no_pending_responses()


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
    pool.renew()  # no sandbox kept from earlier tests: the next request makes the only one
    limit, pool.limit = pool.limit, 1
    try:
        assert api.get(f"/v1/runs/{run['run_id']}").status_code == 200  # one warm sandbox
        with ThreadPoolExecutor(1) as waiter:
            held = waiter.submit(api.get, f"/v1/runs/{run['run_id']}", params={"wait": "true", "wait_timeout": 12})
            deadline = time.monotonic() + 10
            while pool._idle and time.monotonic() < deadline:  # until the waiting request holds the sandbox
                time.sleep(0.05)
            assert not pool._idle and not held.done()
            # When another request for it comes
            answer = anonymous.get(f"/v1/runs/{run['run_id']}", headers={"X-API-KEY": api.headers["X-API-KEY"]})
            # Then it is throttled (after the short wait for a sandbox), not held to the gateway's 29 s
            assert answer.status_code == 429, answer.text
            assert answer.headers["Retry-After"] == "1"
            assert held.result().status_code == 200
    finally:
        pool.limit = limit
        api.post(f"/v1/runs/{run['run_id']}/cancel")
