"""Nothing stays running: when the path that ends a run is lost, the deadline sweeper ends
it; what an asynchronous path cannot deliver lands in the dead-letter queue."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import httpx
import pytest

from taskrun.local.lambdas import InvokeRefused, error_payload
from taskrun.local.stack import LocalStack
from taskrun.runs.sweeper import DISPATCH_MAX_AGE_SECONDS, GRACE_SECONDS, SHORT_LOOKBACK_SECONDS, SHORT_LOST_SECONDS
from taskrun.settings import get_settings
from tests.conftest import load_event

Invoke = Callable[[str, dict[str, Any]], Any]

pytestmark = pytest.mark.usefixtures("own_sweeps")  # each test counts what its own sweep did


@pytest.fixture
def lost(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[set[str]]:
    """Asynchronous invocations of the functions named in the set vanish, as an event
    dropped between services would."""
    runtime = stack.emulator.runtime
    original = runtime.invoke_async
    names: set[str] = set()

    def invoke_async(name_or_arn: str, event: Any) -> None:
        if runtime.function_name(name_or_arn) not in names:
            original(name_or_arn, event)

    monkeypatch.setattr(runtime, "invoke_async", invoke_async)
    yield names


def sweep_at(invoke: Invoke, moment: datetime) -> dict[str, Any]:
    event = load_event("sweeper")
    event["time"] = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    result: dict[str, Any] = invoke("SweeperFunction", event)
    return result


def get(api: httpx.Client, run_id: str) -> dict[str, Any]:
    run: dict[str, Any] = api.get(f"/v1/runs/{run_id}").json()
    return run


def test_a_run_whose_worker_invocation_was_lost_fails_once_it_cannot_start_any_more(
    api: httpx.Client, invoke: Invoke, lost: set[str]
) -> None:
    # Given a run whose asynchronous worker invocation never arrives
    lost.add("WorkerFunction")
    run = api.post("/v1/runs", json={"task_id": "team/add", "arguments": {"a": 1}}).json()
    time.sleep(0.3)
    assert get(api, run["run_id"])["status"] == "pending"

    # When the sweeper runs now, the run may still start: it is left alone
    assert run["run_id"] not in sweep_at(invoke, datetime.now(UTC))["ended"]
    assert get(api, run["run_id"])["status"] == "pending"

    # Then once the invocation could no longer be waiting in Lambda's queue, it is ended
    created = datetime.fromisoformat(run["created_at"].replace("Z", "+00:00"))
    past = created + timedelta(seconds=DISPATCH_MAX_AGE_SECONDS + run["timeout"] + GRACE_SECONDS + 1)
    assert run["run_id"] in sweep_at(invoke, past)["ended"]
    ended = get(api, run["run_id"])
    assert ended["status"] == "failed"
    assert ended["error"]["type"] == "dispatch_error"
    assert "never started" in ended["error"]["message"]
    # And a second sweep changes nothing
    assert run["run_id"] not in sweep_at(invoke, past)["ended"]


def test_a_running_run_whose_worker_died_unreported_ends_timed_out_past_its_deadline(
    api: httpx.Client, invoke: Invoke, lost: set[str], stack: LocalStack
) -> None:
    # Given a worker killed mid-run (as Lambda ends a sandbox out of memory) whose
    # on-failure record is lost
    lost.add("WorkerFailedFunction")
    run = api.post("/v1/runs", json={"task_id": "team/nap", "arguments": {"seconds": 5}}).json()
    deadline = time.monotonic() + 10
    while (current := get(api, run["run_id"]))["status"] == "pending":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pool = stack.emulator.runtime.pool("WorkerFunction")
    for sandbox in pool._all - set(pool._idle):
        os.kill(sandbox.process.pid, signal.SIGKILL)
    time.sleep(6)  # past the nap: nothing ends the run
    assert get(api, run["run_id"])["status"] == "running"

    started = datetime.fromisoformat(current["started_at"].replace("Z", "+00:00"))
    assert run["run_id"] not in sweep_at(invoke, started + timedelta(seconds=run["timeout"]))["ended"]

    assert run["run_id"] in sweep_at(invoke, started + timedelta(seconds=run["timeout"] + GRACE_SECONDS + 1))["ended"]
    ended = get(api, run["run_id"])
    assert ended["status"] == "timed_out"
    assert ended["error"]["type"] == "timeout" and "worker was lost" in ended["error"]["message"]


def test_a_run_whose_request_and_worker_were_both_lost_while_the_request_waited_is_ended_by_the_sweeper(
    api: httpx.Client, invoke: Invoke, stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a waited run (one the worker runs while its request waits, kept out of the
    # `active` index) whose API function is killed as it invokes the worker, which never runs
    runtime = stack.emulator.runtime
    original = runtime.invoke_text

    def invoke_text(name_or_arn: str, event_text: str, *args: Any, **kwargs: Any) -> str:
        if runtime.function_name(name_or_arn) == "WorkerFunction":
            pool = runtime.pool("StartRunFunction")
            for sandbox in pool._all - set(pool._idle):
                os.kill(sandbox.process.pid, signal.SIGKILL)
            raise InvokeRefused(error_payload("ServiceException", "lost"), 500)
        return original(name_or_arn, event_text, *args, **kwargs)

    monkeypatch.setattr(runtime, "invoke_text", invoke_text)
    tag = f"lost-{os.getpid()}-{time.monotonic_ns()}"
    answer = api.post("/v1/runs", json={"task_id": "team/add", "arguments": {"a": 1}, "wait": True, "tags": [tag]})
    assert answer.status_code == 502, answer.text
    monkeypatch.undo()
    [run] = api.get("/v1/runs", params={"status": "pending", "tag": tag}).json()["runs"]
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(get_settings().runs_table)
    assert "active" not in table.get_item(Key={"run_id": run["run_id"]})["Item"]

    # When the sweeper runs before the longest such a run lives has passed, it is left alone
    created = datetime.fromisoformat(run["created_at"].replace("Z", "+00:00"))
    assert run["run_id"] not in sweep_at(invoke, created + timedelta(seconds=SHORT_LOST_SECONDS - 5))["ended"]
    assert get(api, run["run_id"])["status"] == "pending"
    # Then the first sweep past it ends it failed, saying why
    assert run["run_id"] in sweep_at(invoke, created + timedelta(seconds=SHORT_LOST_SECONDS + 5))["ended"]
    ended = get(api, run["run_id"])
    assert ended["status"] == "failed" and ended["error"]["type"] == "dispatch_error"
    assert "the request that started it was lost" in ended["error"]["message"]
    # And a later sweep, as far back as it looks, changes nothing
    assert run["run_id"] not in sweep_at(invoke, created + timedelta(seconds=SHORT_LOOKBACK_SECONDS - 5))["ended"]


def test_a_flow_whose_end_event_was_lost_ends_as_its_execution_did(
    api: httpx.Client, invoke: Invoke, stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given EventBridge losing the execution's status change
    monkeypatch.setattr(stack.emulator.bus, "publish", lambda *args, **kwargs: None)
    body = {"task_id": "examples/delay", "task_type": "flow", "arguments": {"seconds": 0, "name": "Ada"}}
    run = api.post("/v1/runs", json=body).json()
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    deadline = time.monotonic() + 20
    while sfn.describe_execution(executionArn=run["execution_arn"])["status"] == "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert get(api, run["run_id"])["status"] == "running"

    # When the sweeper runs (no waiting for a deadline: the execution says how it ended)
    assert run["run_id"] in sweep_at(invoke, datetime.now(UTC))["ended"]

    # Then the run ended as the event would have ended it
    ended = get(api, run["run_id"])
    assert ended["status"] == "succeeded" and ended["result"] == {"greeting": "hello Ada!"}


def test_a_flow_run_still_executing_is_left_alone(api: httpx.Client, invoke: Invoke) -> None:
    body = {"task_id": "examples/delay", "task_type": "flow", "arguments": {"seconds": 3600, "name": "Bo"}}
    run = api.post("/v1/runs", json=body).json()
    assert run["run_id"] not in sweep_at(invoke, datetime.now(UTC) + timedelta(days=1))["ended"]
    assert get(api, run["run_id"])["status"] == "running"
    api.post(f"/v1/runs/{run['run_id']}/cancel")


def test_an_asynchronous_invocation_that_keeps_failing_lands_in_the_dead_letter_queue(stack: LocalStack) -> None:
    # Given a record the worker's on-failure function cannot take (retried twice, as configured)
    garbage = {"not": "a failure record"}
    stack.emulator.runtime.invoke_async("WorkerFailedFunction", garbage)

    # Then Lambda's failure record, with the event, waits in the dead-letter queue
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.get_queue_url(QueueName="taskrun-local-dead-letters")["QueueUrl"]
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + 15
    while not found:
        assert time.monotonic() < deadline, "nothing reached the dead-letter queue"
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for message in messages:
            record = json.loads(message["Body"])
            if record.get("requestPayload") == garbage:
                found.append(record)
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    record = found[0]
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestContext"]["functionArn"].endswith(":function:WorkerFailedFunction:$LATEST")
    assert record["responsePayload"]["errorType"]


def test_a_queued_run_whose_wake_is_overdue_is_woken_and_runs_once(
    api: httpx.Client, invoke: Invoke, tmp_path: Any
) -> None:
    # Given a run put off by two minutes (its wake waits in the wake state machine)
    marks = tmp_path / "attempts"
    body = {"task_id": "control/patient", "arguments": {"marks": str(marks), "failures": 0}, "delay": 120}
    run = api.post("/v1/runs", json=body).json()
    assert run["status"] == "queued"
    created = datetime.fromisoformat(run["created_at"].replace("Z", "+00:00"))
    # When the sweeper runs before its start time, it leaves it; past it and the grace, it
    # wakes it as if its wake was lost
    assert run["run_id"] not in sweep_at(invoke, created + timedelta(seconds=60))["woken"]
    assert run["run_id"] in sweep_at(invoke, created + timedelta(seconds=120 + GRACE_SECONDS + 1))["woken"]
    # Then it runs, once (its own wake, later, finds the attempt taken)
    ended = api.get(f"/v1/runs/{run['run_id']}", params={"wait": "true", "wait_timeout": 20}).json()
    assert ended["status"] == "succeeded" and len(marks.read_text().splitlines()) == 1


def test_a_queued_run_past_its_ttl_is_ended_expired_by_the_sweeper(api: httpx.Client, invoke: Invoke) -> None:
    run = api.post(
        "/v1/runs", json={"task_id": "examples/greet", "arguments": {"name": "x"}, "delay": 600, "ttl": 900}
    ).json()
    created = datetime.fromisoformat(run["created_at"].replace("Z", "+00:00"))
    assert run["run_id"] not in sweep_at(invoke, created + timedelta(seconds=500))["ended"]
    assert run["run_id"] in sweep_at(invoke, created + timedelta(seconds=901))["ended"]
    ended = get(api, run["run_id"])
    assert ended["status"] == "failed" and ended["error"]["type"] == "expired" and ended["started_at"] is None


def test_a_waiting_run_whose_admission_was_missed_is_admitted_by_the_sweeper(
    api: httpx.Client, invoke: Invoke, tmp_path: Any
) -> None:
    # Given a run waiting for room in its limit that no release will admit (as when a release
    # read the waiting index before the run reached it): recorded queued, with room free
    from taskrun.catalog.registry import catalog
    from taskrun.ids import new_run_id
    from taskrun.models import Run, RunStatus, TaskType
    from taskrun.runs.store import DynamoRunStore
    from taskrun.settings import get_settings

    definition = catalog.get("control/single")
    slots = definition.slots_for(None)
    run = Run(
        run_id=new_run_id(),
        task_id="control/single",
        task_type=TaskType.SCRIPT,
        revision="1",
        arguments={"marks": str(tmp_path / "marks"), "act": "nap", "nap": 0.2},
        status=RunStatus.QUEUED,
        slots=slots,
        waiting_for=slots[0].name,
        timeout=definition.timeout,
        created_at=datetime.now(UTC),
    )
    DynamoRunStore(get_settings().runs_table).create(run)
    time.sleep(1)
    assert get(api, run.run_id)["status"] == "queued"
    # When the sweeper runs a minute on
    swept = sweep_at(invoke, run.created_at + timedelta(seconds=GRACE_SECONDS + 1))
    # Then it admitted the run, which ran
    assert run.run_id in swept["admitted"]
    ended = api.get(f"/v1/runs/{run.run_id}", params={"wait": "true", "wait_timeout": 20}).json()
    assert ended["status"] == "succeeded"
