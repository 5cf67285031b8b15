"""Stories of flows: runs whose body is a Step Functions state machine, executed for real
(the ASL interpreted by the emulator), started, awaited, inspected and stopped over HTTP."""

from __future__ import annotations

import json
import time
from typing import Any

import boto3
import httpx
import pytest

from taskrun.local.stack import LocalStack


def run_flow(api: httpx.Client, task_id: str, arguments: dict[str, Any], **options: Any) -> httpx.Response:
    return api.post("/v1/runs", json={"task_id": task_id, "task_type": "flow", "arguments": arguments, **options})


def wait_for(api: httpx.Client, run_id: str, seconds: float = 20) -> dict[str, Any]:
    return api.get(f"/v1/runs/{run_id}", params={"wait": "true", "wait_timeout": seconds}).json()


def steps(api: httpx.Client, run_id: str, **params: Any) -> list[dict[str, Any]]:
    response = api.get(f"/v1/runs/{run_id}/history", params=params)
    assert response.status_code == 200
    return response.json()["steps"]


def sfn() -> Any:
    return boto3.client("stepfunctions", region_name="us-east-1")


def test_a_three_step_flow_retries_chooses_and_returns_its_output(api: httpx.Client) -> None:
    # Given the order flow (Retry on a busy stock service, Choice of shipping)
    response = run_flow(api, "examples/order", {"order_id": "A-1", "quantity": 2}, wait=True)

    # Then the run ends with the execution's output as its result
    assert response.status_code == 201
    run = response.json()
    assert run["status"] == "succeeded", run
    assert run["task_type"] == "flow"
    assert run["result"] == {
        "order_id": "A-1",
        "status": "shipped",
        "total": 5.0,
        "method": "standard",
        "tracking": "STA-A-1",
    }
    assert run["execution_arn"].endswith(":execution:taskrun-local_examples-order:" + run["run_id"])

    # And its history lists the steps in order, the retried one with two attempts
    history = steps(api, run["run_id"])
    assert [(s["name"], s["status"]) for s in history] == [
        ("Reserve", "succeeded"),
        ("Price", "succeeded"),
        ("ShipChoice", "succeeded"),
        ("ShipStandard", "succeeded"),
        ("Shipped", "succeeded"),
    ]
    assert history[0]["attempts"] == 2 and history[0]["error"] is None
    assert history[1]["output"]["price"] == {"total": 5.0}
    assert all(s["started_at"] <= s["ended_at"] for s in history)


def test_the_choice_takes_the_other_branch_and_a_catch_turns_a_failure_into_a_result(api: httpx.Client) -> None:
    express = run_flow(api, "examples/order", {"order_id": "B-2", "quantity": 1, "express": True}, wait=True).json()
    assert express["result"]["method"] == "express" and express["result"]["total"] == 12.5
    assert "ShipExpress" in [s["name"] for s in steps(api, express["run_id"])]

    rejected = run_flow(api, "examples/order", {"order_id": "C-3", "quantity": 500}, wait=True).json()
    assert rejected["status"] == "succeeded"
    assert rejected["result"] == {"order_id": "C-3", "status": "rejected", "reason": "OutOfStock"}
    reserve = steps(api, rejected["run_id"])[0]
    assert reserve["name"] == "Reserve" and reserve["status"] == "failed" and reserve["error"] == "OutOfStock"


def test_a_map_runs_a_script_for_every_item(api: httpx.Client) -> None:
    run = run_flow(api, "examples/batch", {"numbers": [1, 2, 3, 4]}, wait=True).json()
    assert run["status"] == "succeeded"
    assert run["result"] == {"total": 30}
    names = [s["name"] for s in steps(api, run["run_id"])]
    assert names.count("Square") == 4 and names[0] == "SquareEach" and names[-1] == "Sum"


def test_history_pages_with_a_cursor(api: httpx.Client) -> None:
    run = run_flow(api, "examples/batch", {"numbers": [5, 6]}, wait=True).json()
    everything = steps(api, run["run_id"])
    first = api.get(f"/v1/runs/{run['run_id']}/history", params={"limit": 2}).json()
    rest = api.get(f"/v1/runs/{run['run_id']}/history", params={"limit": 10, "cursor": first["next_cursor"]}).json()
    assert first["steps"] + rest["steps"] == everything
    assert rest["next_cursor"] is None


def test_a_step_that_keeps_failing_fails_the_run_naming_the_step(api: httpx.Client) -> None:
    # A user's own flow, from a --tasks directory, runs like the bundle's
    run = run_flow(api, "team/fragile", {"a": 2}, wait=True).json()
    assert run["status"] == "failed"
    assert run["error"]["type"] == "execution_error"
    assert run["error"]["exception_type"] == "TaskFailure"
    assert run["error"]["message"] == "step 'Explode' failed: TaskFailure: the fuse was lit"
    explode = steps(api, run["run_id"])[-1]
    assert (explode["name"], explode["status"], explode["attempts"]) == ("Explode", "failed", 2)


def test_bad_flow_arguments_are_refused_before_any_execution_starts(api: httpx.Client, stack: LocalStack) -> None:
    machine = stack.stack.state_machines()[0]
    arn = f"arn:aws:states:us-east-1:123456789012:stateMachine:{machine.name}"
    before = len(sfn().list_executions(stateMachineArn=arn)["executions"])

    response = run_flow(api, "examples/order", {"order_id": "", "quantity": 0, "gift": True})

    assert response.status_code == 422
    assert {e["location"] for e in response.json()["errors"]} == {
        "body.arguments.order_id",
        "body.arguments.quantity",
        "body.arguments.gift",
    }
    assert len(sfn().list_executions(stateMachineArn=arn)["executions"]) == before
    assert run_flow(api, "examples/greet", {"name": "x"}).status_code == 422  # a script is not a flow
    mismatch = api.post("/v1/runs", json={"task_id": "examples/order", "task_type": "script", "arguments": {}})
    assert mismatch.status_code == 422
    assert mismatch.json()["errors"][0]["location"] == "body.task_type"


def test_a_long_wait_returns_the_run_as_it_stands_and_it_ends_later(api: httpx.Client) -> None:
    began = time.monotonic()
    run = run_flow(api, "examples/delay", {"seconds": 2, "name": "Lu"}, wait=True, wait_timeout=0.5).json()
    assert run["status"] == "running"
    assert time.monotonic() - began < 2
    assert [s["name"] for s in steps(api, run["run_id"])] == ["Pause"]

    ended = wait_for(api, run["run_id"])
    assert ended["status"] == "succeeded" and ended["result"] == {"greeting": "hello Lu!"}


def test_cancel_stops_a_waiting_flow(api: httpx.Client) -> None:
    run = run_flow(api, "examples/delay", {"seconds": 3600, "name": "Mo"}).json()
    assert run["status"] == "running"

    cancelled = api.post(f"/v1/runs/{run['run_id']}/cancel")

    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    deadline = time.monotonic() + 10
    while sfn().describe_execution(executionArn=run["execution_arn"])["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution was not stopped"
        time.sleep(0.1)
    assert sfn().describe_execution(executionArn=run["execution_arn"])["status"] == "ABORTED"
    time.sleep(0.5)  # the execution's end arrives later and changes nothing
    assert api.get(f"/v1/runs/{run['run_id']}").json()["status"] == "cancelled"


def test_a_flow_stopped_outside_taskrun_ends_its_run_cancelled(api: httpx.Client) -> None:
    run = run_flow(api, "examples/delay", {"seconds": 3600, "name": "No"}).json()
    sfn().stop_execution(executionArn=run["execution_arn"])
    ended = wait_for(api, run["run_id"], 10)
    assert ended["status"] == "cancelled"
    assert ended["error"]["type"] == "cancelled"


def test_a_callback_step_waits_for_a_client_to_complete_it(api: httpx.Client) -> None:
    # Given an approval flow waiting for a person
    run = run_flow(api, "examples/approval", {"requester": "ada", "amount": 120.5}, wait=True, wait_timeout=1).json()
    assert run["status"] == "running"
    callback = _first_callback(api, run["run_id"])
    assert len(api.get(f"/v1/runs/{run['run_id']}/callbacks").json()["callbacks"]) == 1
    assert callback["step"] == "Approve" and callback["status"] == "waiting"
    assert callback["request"] == {"requester": "ada", "amount": 120.5}
    assert "task_token" not in callback

    # When the approver completes the callback
    url = f"/v1/runs/{run['run_id']}/callbacks/{callback['callback_id']}"
    done = api.post(url, json={"output": {"approved": True, "by": "grace"}})
    assert done.status_code == 200 and done.json()["status"] == "succeeded"

    # Then the flow goes on and the run ends with the decision
    ended = wait_for(api, run["run_id"])
    assert ended["status"] == "succeeded"
    assert ended["result"] == {"requester": "ada", "amount": 120.5, "approved": True, "by": "grace"}

    # And a callback is completed once; a wrong one is not found
    again = api.post(url, json={"output": {"approved": False}})
    assert again.status_code == 409 and "completed once" in again.json()["detail"]
    assert api.post(f"/v1/runs/{run['run_id']}/callbacks/cb_nope", json={"output": 1}).status_code == 404
    both = api.post(url, json={"output": 1, "error": "Rejected"})
    assert both.status_code == 422


def test_a_callback_can_fail_the_step(api: httpx.Client) -> None:
    run = run_flow(api, "examples/approval", {"requester": "bo", "amount": 9}).json()
    callback = _first_callback(api, run["run_id"])
    failed = api.post(
        f"/v1/runs/{run['run_id']}/callbacks/{callback['callback_id']}",
        json={"error": "Rejected", "cause": "over budget"},
    )
    assert failed.json()["status"] == "failed"
    ended = wait_for(api, run["run_id"])
    assert ended["result"] == {"requester": "bo", "amount": 9.0, "approved": False}


def test_a_callback_of_a_flow_that_stopped_waiting_answers_409(api: httpx.Client) -> None:
    run = run_flow(api, "examples/approval", {"requester": "cy", "amount": 1}).json()
    callback = _first_callback(api, run["run_id"])
    api.post(f"/v1/runs/{run['run_id']}/cancel")
    time.sleep(0.5)
    late = api.post(f"/v1/runs/{run['run_id']}/callbacks/{callback['callback_id']}", json={"output": {}})
    assert late.status_code == 409
    assert late.json()["detail"].endswith("is cancelled: its callbacks can no longer be completed")
    listed = api.get(f"/v1/runs/{run['run_id']}/callbacks").json()["callbacks"]
    assert listed[0]["status"] == "expired"
    assert api.get("/v1/runs/run_00000000000000000000000000/callbacks").status_code == 404


def _first_callback(api: httpx.Client, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        callbacks = api.get(f"/v1/runs/{run_id}/callbacks").json()["callbacks"]
        if callbacks:
            return dict(callbacks[0])
        time.sleep(0.05)
    pytest.fail("the flow registered no callback")


PARENT_DEFINITION = {
    "StartAt": "RunTask",
    "States": {
        "RunTask": {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
            "Parameters": {
                "FunctionName": "${RunTaskFunctionArn}",
                "Payload": {
                    "task_id.$": "$.task_id",
                    "arguments.$": "$.arguments",
                    "task_token.$": "$$.Task.Token",
                    "execution.$": "$$.Execution.Id",
                },
            },
            "ResultPath": "$.outcome",
            "End": True,
        }
    },
}


def start_parent(stack: LocalStack, name: str, definition: dict[str, Any], execution_input: dict[str, Any]) -> str:
    run_task_arn = "arn:aws:lambda:us-east-1:123456789012:function:RunTaskFunction"
    text = json.dumps(definition).replace("${RunTaskFunctionArn}", run_task_arn)
    arn = sfn().create_state_machine(
        name=name, definition=text, roleArn="arn:aws:iam::123456789012:role/taskrun-local"
    )["stateMachineArn"]
    return str(
        sfn().start_execution(stateMachineArn=arn, name=f"{name}-1", input=json.dumps(execution_input))["executionArn"]
    )


def finished(execution_arn: str, seconds: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while (described := sfn().describe_execution(executionArn=execution_arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the execution did not end"
        time.sleep(0.1)
    return dict(described)


def test_a_state_machine_waiting_on_a_task_token_resumes_with_the_runs_result(
    api: httpx.Client, stack: LocalStack
) -> None:
    # Given any state machine that runs a catalog task with .waitForTaskToken
    execution = start_parent(
        stack, "nightly", PARENT_DEFINITION, {"task_id": "examples/greet", "arguments": {"name": "night"}}
    )

    # Then it resumes with the run's result
    described = finished(execution)
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"])["outcome"] == {"greeting": "hello night!"}

    # And the run says who started it
    runs = api.get("/v1/runs", params={"triggered_by": "step_functions", "limit": 5}).json()["runs"]
    run = next(r for r in runs if r["parent_execution"] == execution)
    assert run["task_id"] == "examples/greet" and run["status"] == "succeeded"


def test_a_failed_run_fails_the_waiting_state_machine_with_the_error_name(stack: LocalStack) -> None:
    execution = start_parent(
        stack, "nightly-failing", PARENT_DEFINITION, {"task_id": "examples/fail", "arguments": {"message": "no"}}
    )
    described = finished(execution)
    assert described["status"] == "FAILED"
    assert described["error"] == "TaskFailure"
    assert described["cause"] == "no"


def test_a_result_too_large_for_a_task_token_fails_the_waiting_state_machine_clearly(stack: LocalStack) -> None:
    # Given a state machine waiting on a run whose result is over what SendTaskSuccess takes
    execution = start_parent(
        stack, "nightly-large", PARENT_DEFINITION, {"task_id": "team/blob", "arguments": {"size": 270_000}}
    )
    # Then it does not wait forever: the state fails, saying why
    described = finished(execution)
    assert described["status"] == "FAILED"
    assert described["error"] == "ResultTooLarge"
    assert "a task token takes at most 262144" in described["cause"]


def test_a_failure_message_too_long_for_a_task_token_reaches_the_waiting_state_cut_to_fit(stack: LocalStack) -> None:
    arguments = {"message": "why " * 10_000}
    execution = start_parent(
        stack, "nightly-wordy", PARENT_DEFINITION, {"task_id": "examples/fail", "arguments": arguments}
    )
    described = finished(execution)
    assert described["status"] == "FAILED" and described["error"] == "TaskFailure"
    # the run keeps 8,192 characters of the message, well within SendTaskFailure's 32,768
    assert len(described["cause"]) == 8_192 and described["cause"].endswith(" [cut]")


def test_a_callback_output_too_large_for_the_flow_is_413_and_the_callback_still_waits(api: httpx.Client) -> None:
    run = run_flow(api, "examples/approval", {"requester": "dee", "amount": 5}).json()
    callback = _first_callback(api, run["run_id"])
    url = f"/v1/runs/{run['run_id']}/callbacks/{callback['callback_id']}"

    too_large = api.post(url, json={"output": {"note": "x" * 270_000}})
    assert too_large.status_code == 413
    assert api.get(f"/v1/runs/{run['run_id']}/callbacks").json()["callbacks"][0]["status"] == "waiting"

    assert api.post(url, json={"output": {"approved": True, "by": "eve"}}).json()["status"] == "succeeded"
    assert wait_for(api, run["run_id"])["result"]["by"] == "eve"


def test_a_plain_invoke_of_the_run_task_function_returns_a_scripts_result(stack: LocalStack) -> None:
    lam = boto3.client("lambda", region_name="us-east-1")
    answer = lam.invoke(
        FunctionName="RunTaskFunction", Payload=json.dumps({"task_id": "team/add", "arguments": {"a": 40, "b": 2}})
    )
    assert "FunctionError" not in answer
    assert json.loads(answer["Payload"].read()) == 42

    failing = lam.invoke(FunctionName="RunTaskFunction", Payload=json.dumps({"task_id": "examples/fail"}))
    assert failing["FunctionError"] == "Unhandled"
    assert json.loads(failing["Payload"].read())["errorType"] == "TaskFailure"


def test_a_flow_past_its_execution_timeout_ends_timed_out(api: httpx.Client) -> None:
    run = run_flow(api, "team/slow", {}).json()
    ended = wait_for(api, run["run_id"], 15)
    assert ended["status"] == "timed_out"
    assert ended["error"]["type"] == "timeout"


def test_starting_a_runs_execution_again_is_harmless(api: httpx.Client, stack: LocalStack) -> None:
    from taskrun.runtime import run_service

    run = run_flow(api, "examples/delay", {"seconds": 3600, "name": "Re"}).json()
    service = run_service()
    assert service.flows is not None
    again = service.flows.dispatch(service.store.get(run["run_id"]))
    assert again == run["execution_arn"]
    machine = run["execution_arn"].replace(":execution:", ":stateMachine:").rsplit(":", 1)[0]
    named = [e for e in sfn().list_executions(stateMachineArn=machine)["executions"] if e["name"] == run["run_id"]]
    assert len(named) == 1
    api.post(f"/v1/runs/{run['run_id']}/cancel")


def test_a_step_result_past_step_functions_limit_passes_by_reference_through_the_results_bucket(
    api: httpx.Client,
) -> None:
    # A result that fits passes between states as it is
    fits = run_flow(api, "team/bulky", {"size": 200_000}, wait=True).json()
    assert fits["status"] == "succeeded" and fits["result"] == {"status": 200}

    # One past 256 KiB is kept in the results bucket; the next step is handed it whole
    relayed = run_flow(api, "team/relay", {"size": 300_000}, wait=True).json()
    assert relayed["status"] == "succeeded", relayed
    assert relayed["result"]["length"] == 300_000

    # and when it is the flow's output, the run shows it as its result_url
    kept = run_flow(api, "team/relay", {"size": 400_000, "keep": True}, wait=True).json()
    assert kept["status"] == "succeeded", kept
    assert kept["result"] is None and kept["result_url"]
    assert httpx.get(kept["result_url"], timeout=30).json() == "x" * 400_000


def test_history_pages_stay_under_lambdas_response_limit_and_the_cursor_reaches_every_step(
    api: httpx.Client,
) -> None:
    # Given a flow whose 30 steps return 200 KB each (6 MB of outputs in all)
    run = run_flow(api, "team/wide", {"sizes": [200_000] * 30}, wait=True).json()
    assert run["status"] == "succeeded", run

    # When its history is read with the largest page size
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 500} if cursor is None else {"limit": 500, "cursor": cursor}
        response = api.get(f"/v1/runs/{run['run_id']}/history", params=params)
        assert response.status_code == 200
        assert len(response.content) < 6_000_000  # what Lambda may hand API Gateway
        page = response.json()
        seen += page["steps"]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    # Then it took more than one page, and together they hold every step once
    assert pages >= 2
    produced = [step for step in seen if step["name"] == "Produce"]
    assert len(produced) == 30, len(produced)
    lengths = sorted(len(step["output"] or "") for step in produced)
    assert lengths == [200_000] * 30
    (each,) = [step for step in seen if step["name"] == "Each"]
    assert each["status"] == "succeeded" and each["output"] == {"sizes": [200_000] * 30}


def test_a_huge_exception_message_is_cut_to_fit_the_run(api: httpx.Client) -> None:
    run = api.post(
        "/v1/runs", json={"task_id": "examples/fail", "arguments": {"message": "boom " * 19_000}, "wait": True}
    ).json()
    assert run["status"] == "failed"
    assert len(run["error"]["message"]) == 8_192 and run["error"]["message"].endswith(" [cut]")
