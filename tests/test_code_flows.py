"""Code-first flows: plain Python on Lambda durable functions, run through the API on the
local stack's durable execution engine (the official one for local runs)."""

from __future__ import annotations

import copy
import json
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from taskrun.local.stack import LocalStack
from taskrun.runs.sweeper import GRACE_SECONDS
from tests.conftest import ROOT
from tests.receiver import Receiver
from tests.test_cli import kill, started
from tests.waiting import until


def ran(api: httpx.Client, body: dict[str, Any], seconds: int = 25) -> dict[str, Any]:
    answer = api.post("/v1/runs", params={"wait": "true", "wait_timeout": seconds}, json=body)
    assert answer.status_code in (200, 201), answer.text
    run: dict[str, Any] = answer.json()
    return run


def test_a_code_first_flow_runs_its_steps_and_ends_with_its_return_value(api: httpx.Client, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    # Given a code-first flow of two steps with a wait between them
    shown = api.get("/v1/tasks/durable/greet").json()
    assert shown["task_type"] == "flow"
    assert shown["parameters"]["required"] == ["name", "marks"]
    # When it is run
    run = ran(api, {"task_id": "durable/greet", "arguments": {"name": "Ada", "marks": str(marks), "pause": 1}})
    # Then it ends with what the function returned, each step run once
    assert run["status"] == "succeeded", run
    assert run["task_type"] == "flow"
    assert run["result"] == {"greeting": "hello Ada, goodbye"}
    assert marks.read_text().split() == ["hello", "goodbye"]


def test_its_operations_are_the_runs_history_steps(api: httpx.Client, tmp_path: Path) -> None:
    arguments = {"name": "Bo", "marks": str(tmp_path / "marks"), "pause": 1}
    run = ran(api, {"task_id": "durable/greet", "arguments": arguments})
    assert run["status"] == "succeeded", run
    history = api.get(f"/v1/runs/{run['run_id']}/history")
    assert history.status_code == 200, history.text
    steps = {step["name"]: step for step in history.json()["steps"]}
    assert [step["name"] for step in history.json()["steps"]] == ["hello", "pause", "goodbye"]
    assert steps["hello"]["type"] == "step" and steps["hello"]["status"] == "succeeded"
    assert steps["hello"]["output"] == "hello" and steps["hello"]["attempts"] == 1
    assert steps["pause"]["type"] == "wait" and steps["pause"]["status"] == "succeeded"
    assert steps["goodbye"]["started_at"] >= steps["pause"]["ended_at"]


def test_a_step_that_raises_fails_the_run_naming_the_step(api: httpx.Client) -> None:
    run = ran(api, {"task_id": "durable/refuse", "arguments": {"why": "out of stock"}})
    assert run["status"] == "failed", run
    assert run["error"]["type"] == "execution_error"
    assert run["error"]["exception_type"] == "ValueError"
    assert run["error"]["message"] == "step 'check' failed: ValueError: out of stock"


def test_arguments_are_checked_against_the_functions_parameters(api: httpx.Client) -> None:
    answer = api.post("/v1/runs", json={"task_id": "durable/greet", "arguments": {"name": 7, "extra": 1}})
    assert answer.status_code == 422, answer.text
    locations = {error["location"] for error in answer.json()["errors"]}
    assert {"body.arguments.name", "body.arguments.marks", "body.arguments.extra"} <= locations


def test_a_callback_waits_for_its_answer_once(api: httpx.Client, tmp_path: Path) -> None:
    # Given a flow waiting for a person's answer
    run = api.post("/v1/runs", json={"task_id": "durable/approve", "arguments": {"marks": str(tmp_path / "m")}}).json()
    callbacks = until(lambda: api.get(f"/v1/runs/{run['run_id']}/callbacks").json()["callbacks"], 20)
    (callback,) = callbacks
    assert callback["step"] == "approval" and callback["status"] == "waiting"
    # When the answer comes
    url = f"/v1/runs/{run['run_id']}/callbacks/{callback['callback_id']}"
    answered = api.post(url, json={"output": {"approved": True}})
    assert answered.status_code == 200, answered.text
    assert answered.json()["status"] == "succeeded"
    # Then the flow goes on with it, and the callback cannot be answered again
    ended = api.get(f"/v1/runs/{run['run_id']}", params={"wait": "true", "wait_timeout": 20}).json()
    assert ended["status"] == "succeeded", ended
    assert ended["result"] == {"answer": '{"approved": true}'}
    # and its history shows the wait as one step, whose output is the answer given
    steps = api.get(f"/v1/runs/{run['run_id']}/history").json()["steps"]
    waits = [step for step in steps if step["type"] == "wait_for_callback"]
    assert [(step["name"], step["status"], step["output"]) for step in waits] == [
        ("approval", "succeeded", {"approved": True})
    ], steps
    assert not [step for step in steps if step["name"].startswith("approval ")], steps  # the SDK's own workings
    again = api.post(url, json={"output": {"approved": False}})
    assert again.status_code == 409, again.text
    unknown = api.post(f"/v1/runs/{run['run_id']}/callbacks/cb_00000000000000000000", json={"output": 1})
    assert unknown.status_code == 404, unknown.text


def test_a_cancel_stops_the_execution_and_the_run_ends_cancelled(api: httpx.Client, tmp_path: Path) -> None:
    run = api.post("/v1/runs", json={"task_id": "durable/approve", "arguments": {"marks": str(tmp_path / "m")}}).json()
    (callback,) = until(lambda: api.get(f"/v1/runs/{run['run_id']}/callbacks").json()["callbacks"], 20)
    cancelled = api.post(f"/v1/runs/{run['run_id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    (expired,) = api.get(f"/v1/runs/{run['run_id']}/callbacks").json()["callbacks"]
    assert expired["status"] == "expired"
    late = api.post(f"/v1/runs/{run['run_id']}/callbacks/{callback['callback_id']}", json={"output": 1})
    assert late.status_code == 409, late.text


def test_a_flow_waiting_at_a_kill_resumes_at_the_next_start_and_runs_no_step_twice(tmp_path: Path) -> None:
    data, marks = tmp_path / "state", tmp_path / "marks"
    headers = {"X-API-KEY": "cli-key"}
    body = {"task_id": "durable/greet", "arguments": {"name": "Cy", "marks": str(marks), "pause": 4}}
    # Given a flow run whose first step succeeded and which waits, when the stack is killed
    with started("--data", str(data)) as (url, process):
        run = httpx.post(f"{url}/v1/runs", headers=headers, json=body, timeout=30).json()

        def waiting() -> bool:  # its first step's success checkpointed, its wait begun
            history = httpx.get(f"{url}/v1/runs/{run['run_id']}/history", headers=headers, timeout=30).json()
            states = {step["name"]: step["status"] for step in history.get("steps", [])}
            return states.get("hello") == "succeeded" and states.get("pause") == "running"

        until(waiting, 30, "the flow did not come to its wait")
        kill(process)
    # Then at the next start on the same folder it goes on from its wait, and ends
    with started("--data", str(data)) as (url, process):

        def ended_run() -> dict[str, Any] | None:
            shown: dict[str, Any] = httpx.get(f"{url}/v1/runs/{run['run_id']}", headers=headers, timeout=30).json()
            return shown if shown["status"] in ("succeeded", "failed", "timed_out") else None

        ended = until(ended_run, 60, "the flow did not end after the restart")
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert "1 code-first flow run goes on from where the last stop left them" in output
    assert ended is not None and ended["status"] == "succeeded", ended
    assert ended["result"] == {"greeting": "hello Cy, goodbye"}
    # each step ran once: the one done before the kill was answered from its checkpoint
    assert marks.read_text().split() == ["hello", "goodbye"]


def test_the_code_first_order_example_does_what_the_asl_one_does(api: httpx.Client) -> None:
    # a reservation retried while the stock service is busy, then priced and shipped
    standard = ran(api, {"task_id": "examples/order_code", "arguments": {"order_id": "o-1", "quantity": 2}})
    assert standard["status"] == "succeeded", standard
    assert standard["result"] == {
        "order_id": "o-1",
        "status": "shipped",
        "total": 5.0,
        "method": "standard",
        "tracking": "STA-o-1",
    }
    steps = api.get(f"/v1/runs/{standard['run_id']}/history").json()["steps"]
    assert [step["name"] for step in steps] == ["reserve", "price", "ship-standard"]
    assert steps[0]["attempts"] == 2  # the first attempt found the stock service busy
    # each step's output as the step returned it (not the SDK's typed envelope)
    assert [step["output"] for step in steps] == [{"reservation": "rsv-o-1"}, 5.0, "STA-o-1"]
    # its logs hold the step that raised, with its traceback in the task's own file (never where
    # it lies on the machine), and nothing of the AWS SDK's (where it found credentials)
    logs = api.get(f"/v1/runs/{standard['run_id']}/logs").json()["text"]
    assert "botocore" not in logs and "credentials" not in logs, logs
    assert "step reserve raised (its retry policy decides what follows):" in logs, logs
    assert 'File "tasks/order_code.py", line ' in logs and "StockBusy: the stock service is busy" in logs, logs
    assert "site-packages" not in logs and str(ROOT) not in logs, logs
    assert "aws_durable_execution_sdk_python" not in logs, logs  # the SDK's own frames are not the task's
    # the same for the ASL flow, which shows its steps as states
    asl = ran(api, {"task_id": "examples/order", "arguments": {"order_id": "o-1", "quantity": 2}})
    assert {key: asl["result"][key] for key in standard["result"]} == standard["result"]
    # express, after a cool-down wait
    express = ran(
        api,
        {
            "task_id": "examples/order_code",
            "arguments": {"order_id": "o-2", "quantity": 1, "express": True, "cool_down": 1},
        },
    )
    assert express["result"]["method"] == "express" and express["result"]["total"] == 12.5
    # out of stock: caught, the order rejected
    rejected = ran(api, {"task_id": "examples/order_code", "arguments": {"order_id": "o-3", "quantity": 1000}})
    assert rejected["status"] == "succeeded", rejected
    assert rejected["result"] == {
        "order_id": "o-3",
        "status": "rejected",
        "reason": "only 100 in stock, 1000 asked for",
    }


def test_the_order_example_waits_for_an_approval_and_a_refusal_rejects_it(api: httpx.Client) -> None:
    arguments = {"order_id": "o-4", "quantity": 1, "approval": True}
    run = api.post("/v1/runs", json={"task_id": "examples/order_code", "arguments": arguments}).json()
    (callback,) = until(lambda: api.get(f"/v1/runs/{run['run_id']}/callbacks").json()["callbacks"], 20)
    refused = api.post(
        f"/v1/runs/{run['run_id']}/callbacks/{callback['callback_id']}", json={"error": "Refused", "cause": "too dear"}
    )
    assert refused.status_code == 200, refused.text
    ended = api.get(f"/v1/runs/{run['run_id']}", params={"wait": "true", "wait_timeout": 20}).json()
    assert ended["status"] == "succeeded", ended
    assert ended["result"]["status"] == "rejected" and "too dear" in ended["result"]["reason"]


@pytest.mark.usefixtures("own_sweeps")
def test_the_sweeper_ends_a_flow_whose_ending_was_lost_and_one_past_its_timeout(
    api: httpx.Client, invoke: Any, tmp_path: Path
) -> None:
    lam = boto3.client("lambda", region_name="us-east-1")
    body = {"task_id": "durable/approve", "arguments": {"marks": str(tmp_path / "m")}}
    # Given a flow whose execution was stopped behind taskrun's back (no ending reaches the run)
    lost = api.post("/v1/runs", json=body).json()
    until(lambda: api.get(f"/v1/runs/{lost['run_id']}/callbacks").json()["callbacks"], 20)
    lam.stop_durable_execution(DurableExecutionArn=lost["execution_arn"])
    assert api.get(f"/v1/runs/{lost['run_id']}").json()["status"] == "running"
    # and one waiting for an answer that never comes
    waiting = api.post("/v1/runs", json=body).json()
    until(lambda: api.get(f"/v1/runs/{waiting['run_id']}/callbacks").json()["callbacks"], 20)

    # When the sweeper runs now, the stopped one ends as its execution did
    swept = invoke("SweeperFunction", {"time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert lost["run_id"] in swept["ended"] and waiting["run_id"] not in swept["ended"]
    assert api.get(f"/v1/runs/{lost['run_id']}").json()["status"] == "cancelled"
    # and once the waiting one's timeout has passed, it is stopped and ends timed_out
    later = datetime.now(UTC) + timedelta(seconds=waiting["timeout"] + GRACE_SECONDS + 1)
    swept = invoke("SweeperFunction", {"time": later.strftime("%Y-%m-%dT%H:%M:%SZ")})
    assert waiting["run_id"] in swept["ended"]
    ended = api.get(f"/v1/runs/{waiting['run_id']}").json()
    assert ended["status"] == "timed_out" and "timeout" in ended["error"]["message"]
    assert lam.get_durable_execution(DurableExecutionArn=waiting["execution_arn"])["Status"] == "STOPPED"


def test_a_flow_function_without_its_checkpoint_permission_is_refused_by_iam(
    api: httpx.Client, stack: LocalStack, tmp_path: Path
) -> None:
    judge = stack.emulator.iam
    roles = judge.roles["FlowFunction"]
    kept = copy.deepcopy(roles)
    for policy in roles:
        for statement in policy["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            statement["Action"] = [action for action in actions if action != "lambda:CheckpointDurableExecution"]
    try:
        refused_before = len(judge.refused)
        body = {"task_id": "durable/greet", "arguments": {"name": "Di", "marks": str(tmp_path / "m")}}
        run = api.post("/v1/runs", json=body).json()
        until(
            lambda: any(call.action == "lambda:CheckpointDurableExecution" for call in judge.refused[refused_before:]),
            20,
            "no checkpoint was refused",
        )
        refused = next(
            call for call in judge.refused[refused_before:] if call.action.endswith("CheckpointDurableExecution")
        )
        assert refused.function == "FlowFunction"
        # and the run ends failed, saying so, rather than wait for ever
        ended = api.get(f"/v1/runs/{run['run_id']}", params={"wait": "true", "wait_timeout": 20}).json()
        assert ended["status"] == "failed", ended
        assert "AccessDenied" in ended["error"]["message"], ended["error"]
    finally:
        roles[:] = kept


def test_an_execution_name_is_one_execution_and_refused_with_other_input(api: httpx.Client, tmp_path: Path) -> None:
    lam = boto3.client("lambda", region_name="us-east-1")
    function = "arn:aws:lambda:us-east-1:123456789012:function:taskrun-local-flows:live"
    payload = {"run_id": "run_0", "task_id": "durable/approve", "revision": "1", "arguments": {"marks": str(tmp_path)}}
    name = f"by-hand-{tmp_path.name}"[:64].replace(".", "-")

    def start(arguments: dict[str, Any]) -> Any:
        body = json.dumps({**payload, "arguments": arguments}).encode()
        return lam.invoke(FunctionName=function, InvocationType="Event", DurableExecutionName=name, Payload=body)

    first = start({"marks": str(tmp_path)})
    # a second start of the same name and input is the same execution
    assert start({"marks": str(tmp_path)})["DurableExecutionArn"] == first["DurableExecutionArn"]
    # with other input it is refused, as Lambda refuses it
    with pytest.raises(ClientError) as refused:
        start({"marks": str(tmp_path / "other")})
    assert refused.value.response["Error"]["Code"] == "DurableExecutionAlreadyStartedException"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    lam.stop_durable_execution(DurableExecutionArn=first["DurableExecutionArn"])


def test_a_code_first_flow_is_a_run_like_any_other(api: httpx.Client, receiver: Receiver, tmp_path: Path) -> None:
    arguments = {"name": "Ed", "marks": str(tmp_path / "marks")}
    body = {"task_id": "durable/greet", "arguments": arguments}
    # tags, a json_schema its result is held to, a webhook, an idempotency key
    schema = {"type": "object", "required": ["greeting"]}
    extra = {"tags": ["ops"], "json_schema": schema, "webhook_url": receiver.url}
    key = {"Idempotency-Key": f"code-flow-{tmp_path.name}"}
    first = api.post("/v1/runs", json={**body, **extra, "wait": True}, headers=key).json()
    again = api.post("/v1/runs", json={**body, **extra, "wait": True}, headers=key).json()
    assert first["status"] == "succeeded" and again["run_id"] == first["run_id"]
    assert first["tags"] == ["ops"]
    receiver.wait_for(lambda: bool(receiver.of_run(first["run_id"])), timeout=20)
    (delivered,) = receiver.of_run(first["run_id"])
    assert receiver.verify(delivered)["data"]["result"] == {"greeting": "hello Ed, goodbye"}
    # a result against the run's json_schema fails it
    strict = {"type": "object", "required": ["farewell"]}
    broken = ran(api, {**body, "json_schema": strict})
    assert broken["status"] == "failed" and broken["error"]["type"] == "validation_error"
    # a re-run, a batch, a delayed start
    plain = ran(api, body)
    rerun = api.post(f"/v1/runs/{plain['run_id']}/rerun", params={"wait": "true"}).json()
    assert rerun["status"] == "succeeded" and rerun["rerun_of"] == plain["run_id"]
    assert rerun["result"] == plain["result"] == {"greeting": "hello Ed, goodbye"}
    batch = api.post("/v1/runs/batch", json={"runs": [body, body]}).json()["runs"]
    assert len(batch) == 2 and all(item["run"]["task_type"] == "flow" for item in batch)
    delayed = api.post("/v1/runs", json={**body, "delay": 2}).json()
    assert delayed["status"] == "queued"
    ended = api.get(f"/v1/runs/{delayed['run_id']}", params={"wait": "true", "wait_timeout": 20}).json()
    assert ended["status"] == "succeeded", ended
    for item in batch:
        done = api.get(f"/v1/runs/{item['run']['run_id']}", params={"wait": "true", "wait_timeout": 20}).json()
        assert done["status"] == "succeeded", done
    # and the compatible endpoint runs it as a flow
    compat = api.post("/api/v0/tools/tasks/run", json={**body, "task_type": "flow"}).json()
    assert compat["success"] is True and compat["result"] == {"greeting": "hello Ed, goodbye"}


def test_a_step_whose_result_is_not_json_fails_the_run_saying_so(api: httpx.Client) -> None:
    run = ran(api, {"task_id": "durable/unjson", "arguments": {}})
    assert run["status"] == "failed", run
    assert run["error"]["type"] == "execution_error"
    assert run["error"]["message"].startswith("step 'odd' returned a result JSON cannot hold")


def test_a_schedule_starts_a_code_first_flow(api: httpx.Client, tmp_path: Path) -> None:
    body = {
        "task_id": "durable/greet",
        "arguments": {"name": "Sy", "marks": str(tmp_path / "marks")},
        "expression": "rate(1 day)",
    }
    schedule = api.post("/v1/schedules", json=body)
    assert schedule.status_code == 201, schedule.text
    try:
        started = api.post(f"/v1/schedules/{schedule.json()['schedule_id']}/execute")
        assert started.status_code in (200, 201, 202), started.text
        run_id = started.json()["run_id"]
        ended = api.get(f"/v1/runs/{run_id}", params={"wait": "true", "wait_timeout": 20}).json()
        assert ended["status"] == "succeeded" and ended["task_type"] == "flow", ended
        assert ended["result"] == {"greeting": "hello Sy, goodbye"}
    finally:
        api.delete(f"/v1/schedules/{schedule.json()['schedule_id']}")


def test_a_catalog_script_runs_as_a_step_and_its_progress_is_the_runs(api: httpx.Client) -> None:
    run = ran(api, {"task_id": "durable/scripted", "arguments": {"n": 5}})
    assert run["status"] == "succeeded", run
    assert run["result"] == {"n": 7}
    assert run["progress"]["message"] == "counted past 6"
    steps = api.get(f"/v1/runs/{run['run_id']}/history").json()["steps"]
    assert [(step["name"], step["output"]) for step in steps] == [("count", 6), ("again", 7)]
    # a step's arguments are the script's to judge: a bad one fails the step, saying so
    refused = ran(api, {"task_id": "durable/misscripted", "arguments": {}})
    assert refused["status"] == "failed", refused
    assert refused["error"]["exception_type"] == "InvalidInput"
    assert refused["error"]["message"].startswith(
        "step 'count' failed: InvalidInput: the arguments of durable/count do not match its parameters: arguments.n: "
    )


def test_a_flow_whose_execution_cannot_be_started_ends_dispatch_error_at_once(
    api: httpx.Client, stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a durable execution service that fails every start (unreachable, or down)
    def down(*args: Any, **kwargs: Any) -> str:
        raise ConnectionError("the durable execution service is down")

    monkeypatch.setattr(stack.emulator.durable, "start_execution", down)
    # When a code-first flow is run, the answer is the run ended, saying why, never a 5xx
    answer = api.post("/v1/runs", json={"task_id": "durable/refuse", "arguments": {"why": "x"}, "wait": True})
    assert answer.status_code == 201, answer.text
    run = answer.json()
    assert run["status"] == "failed" and run["error"]["type"] == "dispatch_error", run
    assert "the flow's execution could not be started" in run["error"]["message"]


def test_a_flow_removed_from_the_catalog_is_a_dispatch_failure_not_a_crash() -> None:
    from taskrun.catalog.registry import Catalog
    from taskrun.flows.durable import DurableFlows, FlowEngines
    from taskrun.flows.stepfunctions import StepFunctions
    from taskrun.models import Run, RunStatus, TaskType
    from taskrun.runs.dispatch import DispatchFailed

    engines = FlowEngines(Catalog(), StepFunctions("arn:aws:states:us-east-1:1:stateMachine:x_"), DurableFlows("f"))
    run = Run(
        run_id="run_" + "0" * 26,
        task_id="gone/flow",
        task_type=TaskType.FLOW,
        revision="1",
        arguments={},
        status=RunStatus.PENDING,
        created_at=datetime.now(UTC),
    )
    with pytest.raises(DispatchFailed, match="no longer in the catalog"):
        engines.dispatch(run)


FLOW_KEY, STEP_KEY = "fk_live_9Qx2WmZr7TtYv1BnHs4d", "sk_step_L0pQ8cVe3NaKu6Rj"


def test_a_flow_and_its_script_steps_read_their_secrets_report_usage_and_keep_logs(
    api: httpx.Client, stack: LocalStack
) -> None:
    folder = stack.secrets_path()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    (folder / "test-flow-key").write_text(FLOW_KEY)
    (folder / "test-step-key").write_text(STEP_KEY)
    try:
        # When a flow that reads a secret, reports usage, logs and waits runs a script step of its own
        body = {"task_id": "durable/metered", "arguments": {"amount": 3, "words": "one two three four"}}
        run = ran(api, body)
        # Then each read its secret, and the run's usage is both invocations' together
        assert run["status"] == "succeeded", run
        assert run["result"] == {"key_length": len(FLOW_KEY), "tokens": 4}
        assert run["usage"] == {"calls": 1, "tokens": 4}
        # And the run's logs hold what each invocation printed or logged, once, secrets masked
        logs = api.get(f"/v1/runs/{run['run_id']}/logs").json()["text"]
        assert logs.count("charging 3 with ********") == 1, logs
        assert logs.count("charged, now waiting") == 1, logs  # context.logger is quiet on replay
        assert "counting with ********" in logs
        assert logs.index("--- flow started ---") < logs.index("charging") < logs.index("--- flow resumed ---")
        assert logs.index("--- flow resumed ---") < logs.index("counting with")
        shown = api.get(f"/v1/runs/{run['run_id']}").text + logs + api.get("/v1/runs?task_id=durable/metered").text
        assert FLOW_KEY not in shown and STEP_KEY not in shown
        # And once the flow's secret is gone, its runs fail before a step runs, saying which
        (folder / "test-flow-key").unlink()
        missing = ran(api, body)
        assert missing["status"] == "failed", missing
        assert missing["error"]["exception_type"] == "SecretNotFound"
        assert (
            "the flow's secret 'test-flow-key' is not set (taskrun secrets set test-flow-key)"
            in (missing["error"]["message"])
        )
        assert api.get(f"/v1/runs/{missing['run_id']}/history").json()["steps"] == []
        # And a script step whose own secret is gone fails that step, naming it
        (folder / "test-flow-key").write_text(FLOW_KEY)
        (folder / "test-step-key").unlink()
        step_missing = ran(api, body)
        assert step_missing["status"] == "failed", step_missing
        assert step_missing["error"]["exception_type"] == "SecretNotFound"
        assert step_missing["error"]["message"].startswith("step 'tokens' failed: SecretNotFound: the task's secret")
    finally:
        for name in ("test-flow-key", "test-step-key"):
            (folder / name).unlink(missing_ok=True)


def test_a_code_first_flow_takes_a_ttl_and_refuses_a_concurrency_key_as_any_flow(
    api: httpx.Client, tmp_path: Path
) -> None:
    body = {"task_id": "durable/greet", "arguments": {"name": "Ty", "marks": str(tmp_path / "marks")}}
    # a ttl that reaches past its delay: started in time, it runs to its end
    run = api.post("/v1/runs", json={**body, "delay": 1, "ttl": 30}).json()
    assert run["status"] == "queued" and run["expires_at"], run
    ended = api.get(f"/v1/runs/{run['run_id']}", params={"wait": "true", "wait_timeout": 20}).json()
    assert ended["status"] == "succeeded", ended
    # a ttl within its delay is refused where it is
    short = api.post("/v1/runs", json={**body, "delay": 5, "ttl": 2})
    assert short.status_code == 422 and short.json()["errors"][0]["location"] == "body.ttl", short.text
    # a flow counts no runs per concurrency key: a key is refused, as for an ASL flow
    order = {"order_id": "o-1", "quantity": 1}
    for task_id, arguments in (("durable/greet", body["arguments"]), ("examples/order", order)):
        answer = api.post("/v1/runs", json={"task_id": task_id, "arguments": arguments, "concurrency_key": "t-1"})
        assert answer.status_code == 422, answer.text
        assert [error["location"] for error in answer.json()["errors"]] == ["body.concurrency_key"]


def test_the_sweeper_holds_a_lost_ending_s_result_to_the_run_s_json_schema_and_size(
    api: httpx.Client, invoke: Any, tmp_path: Path
) -> None:
    from taskrun.settings import get_settings

    table = boto3.resource("dynamodb", region_name="us-east-1").Table(get_settings().runs_table)
    body = {"task_id": "durable/greet", "arguments": {"name": "Lu", "marks": str(tmp_path / "m")}}
    # Given a flow whose result is unlike its json_schema, whose ending was lost
    run = ran(api, {**body, "json_schema": {"type": "object", "required": ["farewell"]}})
    assert run["status"] == "failed" and run["error"]["type"] == "validation_error", run
    item = table.get_item(Key={"run_id": run["run_id"]})["Item"]
    table.update_item(
        Key={"run_id": run["run_id"]},
        UpdateExpression="SET #status = :running, active = :kind REMOVE ended_at, #error, duration_ms",
        ExpressionAttributeNames={"#status": "status", "#error": "error"},
        ExpressionAttributeValues={":running": "running", ":kind": item["kind"]},
    )
    assert api.get(f"/v1/runs/{run['run_id']}").json()["status"] == "running"
    # When the sweeper finds its execution ended
    swept = invoke("SweeperFunction", {"time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")})
    # Then the run ends as the flow function would have ended it: failed, not succeeded
    assert run["run_id"] in swept["ended"]
    ended = api.get(f"/v1/runs/{run['run_id']}").json()
    assert ended["status"] == "failed" and ended["error"]["type"] == "validation_error", ended
    assert ended.get("result") is None
