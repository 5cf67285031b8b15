"""Each function's handler driven by its sample event in events/, as Lambda would call it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from taskrun.local.sandbox import FunctionError
from taskrun.models import utcnow
from taskrun.runs.service import RunRequest, RunService
from taskrun.runtime import run_service
from tests.conftest import API_KEY, load_event
from tests.test_lifecycle import HeldDispatcher

Invoke = Callable[[str, dict[str, Any]], Any]


def body(answer: dict[str, Any]) -> Any:
    return json.loads(answer["body"])


def test_health_event(invoke: Invoke) -> None:
    answer = invoke("HealthFunction", load_event("health"))
    assert answer["statusCode"] == 200
    assert body(answer) == {"status": "ok"}


def test_docs_event_behind_a_stage_names_the_stage_as_the_server(invoke: Invoke) -> None:
    # Given a request through the execute-api address, whose paths start with the stage
    answer = invoke("DocsFunction", load_event("docs_openapi"))
    # Then the document's server is that stage, so Swagger UI's calls reach the same API
    assert answer["statusCode"] == 200
    assert body(answer)["servers"] == [{"url": "/Prod"}]


def test_console_event_answers_the_page_with_a_policy_that_loads_only_its_own_assets(invoke: Invoke) -> None:
    answer = invoke("ConsoleFunction", load_event("console"))
    assert answer["statusCode"] == 200
    headers = answer["multiValueHeaders"]
    assert headers["Content-Type"][0].startswith("text/html")
    (policy,) = headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    # the assets are named relative to the page, so they come through the same stage
    assert 'src="console/assets/console.js' in answer["body"] and "//" not in answer["body"].split("<body>")[0]


def test_start_get_list_and_cancel_events(invoke: Invoke) -> None:
    # Given a run started from the sample event (greet, with wait)
    started = invoke("StartRunFunction", load_event("runs_create"))
    assert started["statusCode"] == 201
    run = body(started)
    assert run["status"] == "succeeded"
    assert run["result"] == {"greeting": "hello Ada hello Ada!"}

    # When it is fetched with the sample GET event pointed at it
    event = load_event("runs_get")
    event["pathParameters"]["run_id"] = run["run_id"]
    event["path"] = f"/v1/runs/{run['run_id']}"
    fetched = invoke("GetRunFunction", event)
    assert fetched["statusCode"] == 200
    assert body(fetched)["run_id"] == run["run_id"]

    # Then the list of the task's runs starts with it
    listed = invoke("ListRunsFunction", load_event("runs_list"))
    assert listed["statusCode"] == 200
    assert body(listed)["runs"][0]["run_id"] == run["run_id"]

    # And cancelling an ended run is a conflict
    event = load_event("runs_cancel")
    event["pathParameters"]["run_id"] = run["run_id"]
    event["path"] = f"/v1/runs/{run['run_id']}/cancel"
    cancelled = invoke("CancelRunFunction", event)
    assert cancelled["statusCode"] == 409
    assert cancelled["multiValueHeaders"]["Content-Type"] == ["application/problem+json"]


def test_rerun_and_batch_events(invoke: Invoke) -> None:
    # Given a run, re-run from the sample event pointed at it (the current revision)
    run = body(invoke("StartRunFunction", load_event("runs_create")))
    event = load_event("runs_rerun")
    event["pathParameters"]["run_id"] = run["run_id"]
    event["path"] = f"/v1/runs/{run['run_id']}/rerun"
    again = invoke("RerunRunFunction", event)
    assert again["statusCode"] == 201
    assert body(again)["rerun_of"] == run["run_id"] and body(again)["arguments"] == run["arguments"]
    # And the sample batch: one run now, one queued for a minute
    answer = invoke("BatchRunsFunction", load_event("runs_batch"))
    assert answer["statusCode"] == 200
    first, later = body(answer)["runs"]
    assert first["status"] == 201 and first["run"]["task_id"] == "examples/greet"
    assert later["status"] == 201 and later["run"]["status"] == "queued" and later["run"]["tags"] == ["later"]


def test_catalog_events(invoke: Invoke) -> None:
    listed = body(invoke("CatalogFunction", load_event("catalog_list")))
    assert "examples/greet" in [t["task_id"] for t in listed["tasks"]]
    one = invoke("CatalogFunction", load_event("catalog_get"))
    assert body(one)["task_id"] == "examples/greet"


def test_compat_event(invoke: Invoke, api: httpx.Client) -> None:
    answer = invoke("CompatRunFunction", load_event("compat_run"))
    assert answer["statusCode"] == 200
    job = body(answer)
    if job["error_type"] == "timeout":  # a loaded machine: the run outlasted the endpoint's wait (3 s here)
        run = api.get(f"/v1/runs/{job['job_id']}", params={"wait": "true", "wait_timeout": 20}).json()
        assert run["status"] == "succeeded", run
        job = {"result": run["result"]}
    assert job["result"] == {"greeting": "hello Ada!"}


def test_worker_event_for_an_ended_run_changes_nothing(invoke: Invoke) -> None:
    # An asynchronous invoke may be delivered again: the worker leaves an ended run alone.
    run = body(invoke("StartRunFunction", load_event("runs_create")))
    event = load_event("worker")
    event["run_id"] = run["run_id"]
    answer = invoke("WorkerFunction", event)
    # it answers with the run as it stands (what a synchronous caller answers with)
    assert (answer["run_id"], answer["status"], answer["ended_at"]) == (run["run_id"], "succeeded", run["ended_at"])
    assert answer["result"] == run["result"]


def test_worker_refuses_a_malformed_event(invoke: Invoke) -> None:
    with pytest.raises(FunctionError) as raised:
        invoke("WorkerFunction", {"run": "x"})
    assert raised.value.payload["errorType"] == "ValidationError"


def test_authorizer_event(invoke: Invoke) -> None:
    event = load_event("authorizer")
    event["headers"]["X-API-KEY"] = API_KEY
    policy = invoke("AuthorizerFunction", event)
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    # the policy opens each route the key's scopes allow, by method and path
    resources = policy["policyDocument"]["Statement"][0]["Resource"]
    assert any(resource.endswith("/live/POST/v1/runs") for resource in resources)
    assert any(resource.endswith("/live/GET/v1/runs/*/history") for resource in resources)
    assert any(resource.endswith("/live/DELETE/v1/keys/*") for resource in resources)
    # the local stack's key holds every scope, for every task
    assert policy["context"]["scopes"] == "runs:write runs:read schedules:write schedules:read admin"
    assert policy["context"]["tasks"] == ""

    event["headers"]["X-API-KEY"] = "wrong"
    with pytest.raises(FunctionError, match=r"^Unauthorized$"):
        invoke("AuthorizerFunction", event)


def test_authorizer_lets_ambiguous_credentials_on_only_to_be_refused_400(invoke: Invoke) -> None:
    # Given an authorizer event whose request sent two X-API-KEY headers, one of them valid
    event = load_event("authorizer")
    event["headers"]["X-API-KEY"] = API_KEY
    event["multiValueHeaders"]["X-API-KEY"] = ["other-key", API_KEY]
    # Then the policy carries no scope, only the reason, so that the function refuses it
    policy = invoke("AuthorizerFunction", event)
    assert "scopes" not in policy["context"] and "2 X-API-KEY headers" in policy["context"]["refused"]
    # and the function answers such a request 400 before reading it
    request = load_event("runs_create")
    request["requestContext"]["authorizer"] = policy["context"]
    answer = invoke("StartRunFunction", request)
    assert answer["statusCode"] == 400 and "send one key" in body(answer)["detail"]
    # When neither key is valid, it is Unauthorized as any wrong key
    event["multiValueHeaders"]["X-API-KEY"] = ["other-key", "wrong"]
    with pytest.raises(FunctionError, match=r"^Unauthorized$"):
        invoke("AuthorizerFunction", event)


def test_worker_failed_event_ends_a_running_run_timed_out(invoke: Invoke) -> None:
    # Given a run its worker has started (the dispatcher is held, so nothing else runs it)
    live = run_service()
    held = RunService(store=live.store, dispatcher=HeldDispatcher(), catalog=live.catalog, settings=live.settings)
    run = held.start(RunRequest(task_id="examples/sleep", arguments={"seconds": 1}))
    live.store.mark_running(run.run_id, utcnow())

    # When Lambda reports that the worker timed out (the sample destination record)
    event = load_event("worker_failed")
    event["requestPayload"]["run_id"] = run.run_id
    answer = invoke("WorkerFailedFunction", event)

    # Then the run ends timed_out, and a repeated report changes nothing
    assert answer == {"run_id": run.run_id, "status": "timed_out"}
    ended = live.store.get(run.run_id)
    assert ended.error is not None and ended.error.type == "timeout"
    assert "Task timed out after 900.00 seconds" in ended.error.message
    assert invoke("WorkerFailedFunction", event) == {"run_id": run.run_id, "status": "timed_out"}


def test_flow_ended_event_ends_the_flow_run_with_the_execution_output(invoke: Invoke) -> None:
    # Given a flow run whose execution ended (the dispatcher is held: the event is the only news)
    live = run_service()
    held = RunService(store=live.store, dispatcher=HeldDispatcher(), catalog=live.catalog, settings=live.settings)
    run = held.start(RunRequest(task_id="examples/order", arguments={"order_id": "A-1", "quantity": 2}))
    event = load_event("flow_ended")
    event["detail"]["name"] = run.run_id

    # When EventBridge delivers the status change, twice (at-least-once)
    first = invoke("FlowEndedFunction", event)
    second = invoke("FlowEndedFunction", event)

    # Then the run has ended once, with the execution's output as its result
    assert first == second == {"run_id": run.run_id, "status": "succeeded"}
    ended = live.store.get(run.run_id)
    assert ended.result == {
        "order_id": "A-1",
        "status": "shipped",
        "total": 5.0,
        "method": "standard",
        "tracking": "STA-A-1",
    }
    assert ended.started_at is not None and ended.duration_ms == 5000


def test_flow_ended_event_of_an_execution_that_is_no_run_is_ignored(invoke: Invoke) -> None:
    assert invoke("FlowEndedFunction", load_event("flow_ended")) == {"run_id": None, "status": None}


def test_history_and_callbacks_events(invoke: Invoke) -> None:
    run = body(invoke("StartRunFunction", load_event("runs_create")))
    for name, function in (("runs_history", "RunHistoryFunction"), ("callbacks_list", "CallbacksFunction")):
        event = load_event(name)
        event["pathParameters"]["run_id"] = run["run_id"]
        event["path"] = event["path"].replace("run_01m84c2bq8y4a7r1t3d5f9h2kx", run["run_id"])
        answer = invoke(function, event)
        assert answer["statusCode"] == 200, answer
        assert next(iter(body(answer).values())) == []  # a script run has no steps and no callbacks

    unknown = invoke("CallbacksFunction", load_event("callbacks_complete"))
    assert unknown["statusCode"] == 404


def test_run_task_event_starts_a_run_for_a_state_machine(invoke: Invoke) -> None:
    answer = invoke("RunTaskFunction", load_event("run_task"))
    assert answer["status"] in ("pending", "running")
    run = run_service().wait(answer["run_id"], 10)
    assert run.status == "succeeded" and run.triggered_by == "step_functions"
    assert run.parent_execution == "arn:aws:states:us-east-1:123456789012:execution:nightly-report:2026-11-23"
    assert run.to_api().model_dump().get("task_token") is None  # the token never shows


def test_notifier_event_with_a_token_no_state_machine_waits_for(invoke: Invoke) -> None:
    # The sample token belongs to no execution: the notifier says so and goes on (no retry storm).
    assert invoke("NotifierFunction", load_event("notifier")) == {"released": 0, "deliveries": 0, "admitted": 0}


def test_deliveries_events(invoke: Invoke) -> None:
    run = body(invoke("StartRunFunction", load_event("runs_create")))
    listed = load_event("deliveries_list")
    listed["pathParameters"]["run_id"] = run["run_id"]
    listed["path"] = listed["path"].replace("run_01m84c2bq8y4a7r1t3d5f9h2kx", run["run_id"])
    answer = invoke("DeliveriesFunction", listed)
    assert answer["statusCode"] == 200 and body(answer) == {"deliveries": []}  # started without a webhook
    assert invoke("DeliveriesFunction", load_event("deliveries_retry"))["statusCode"] == 404  # no such run


def test_webhook_event_for_a_delivery_that_does_not_exist_is_dropped(invoke: Invoke) -> None:
    # A message naming no delivery is done with (deleted), not retried into the dead-letter queue.
    assert invoke("WebhookFunction", load_event("webhook")) == {"batchItemFailures": []}


def test_a_wait_counts_from_the_requests_arrival_not_from_the_handlers_start(invoke: Invoke) -> None:
    # Given a start that reached the gateway 24.5 s ago (a slow cold start, say), asking to wait
    event = load_event("runs_create")
    event["requestContext"]["requestTimeEpoch"] -= 24_500
    event["body"] = json.dumps({"task_id": "examples/sleep", "arguments": {"seconds": 3}, "wait": True})

    # Then the handler waits only what is left of the 25 s, and answers the run as it stands
    began = time.monotonic()
    answer = invoke("StartRunFunction", event)
    assert answer["statusCode"] == 201
    assert body(answer)["status"] in ("pending", "running")
    assert time.monotonic() - began < 2.5


def test_a_function_called_without_the_gateway_still_checks_the_scope(invoke: Invoke) -> None:
    # Given the sample start event, as if its key held every scope but runs:write
    event = load_event("runs_create")
    event["requestContext"]["authorizer"]["scopes"] = "runs:read schedules:write schedules:read admin"
    # When the function is invoked with it directly (not through API Gateway's policy)
    answer = invoke("StartRunFunction", event)
    # Then it refuses the run itself
    assert answer["statusCode"] == 403
    assert "runs:write" in body(answer)["detail"]
    # and an event with no authorizer context at all is refused the same way
    del event["requestContext"]["authorizer"]
    assert invoke("StartRunFunction", event)["statusCode"] == 403


def test_mcp_event_calls_a_tool_and_answers_the_run_s_result(invoke: Invoke) -> None:
    # Given a 2026-07-28 tools/call through API Gateway (no handshake, the key's context attached)
    answer = invoke("McpFunction", load_event("mcp_call"))
    # Then the SDK answers one JSON-RPC response: the run's result, the run named in _meta
    assert answer["statusCode"] == 200
    message = body(answer)
    assert message["id"] == 1
    result = message["result"]
    assert result["isError"] is False and result["structuredContent"] == {"greeting": "hello Ada!"}
    run = run_service().store.get(result["_meta"]["taskrun/run_id"])
    assert (run.task_id, run.status, run.triggered_by) == ("examples/greet", "succeeded", "mcp")
