"""Local Lambda retires sandboxes nothing has invoked for a while, as Lambda retires idle
execution environments: after a burst, the stack goes back to its resting processes. And
at rest the stack's process holds only what the services taskrun calls need."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from taskrun.local.stack import LocalStack, idle_seconds_setting
from tests.conftest import ROOT
from tests.test_run_control import until


@pytest.fixture
def short_idle(stack: LocalStack) -> Iterator[float]:
    runtime = stack.emulator.runtime
    kept = runtime.idle_seconds
    runtime.idle_seconds = 2.0
    yield runtime.idle_seconds
    runtime.idle_seconds = kept


def live_sandboxes(stack: LocalStack) -> dict[str, int]:
    return {name: len(pool.pids()) for name, pool in stack.emulator.runtime.pools().items() if pool.pids()}


def test_after_a_burst_idle_sandboxes_are_retired_and_the_next_run_starts_a_new_one(
    api: httpx.Client, stack: LocalStack, short_idle: float
) -> None:
    # Given a burst of 8 runs at once, each in a worker sandbox of its own while it sleeps
    def run(_: int) -> str:
        body = {"task_id": "examples/sleep", "arguments": {"seconds": 1.5}, "wait": True}
        return str(api.post("/v1/runs", json=body).json()["status"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(run, range(8)))
    assert statuses == ["succeeded"] * 8
    after_burst = live_sandboxes(stack)
    worker = stack.emulator.runtime.pool("WorkerFunction")
    print(f"\n  sandboxes after the burst: {sum(after_burst.values())} {after_burst}")
    assert after_burst["WorkerFunction"] >= 2
    # When nothing is invoked for the idle time
    # Then every idle sandbox is stopped, its process gone
    pids = worker.pids()
    assert until(lambda: not live_sandboxes(stack), timeout=60, every=0.2), live_sandboxes(stack)
    assert not [pid for pid in pids if os.path.exists(f"/proc/{pid}") and _running(pid)]
    print(f"  sandboxes {short_idle:g} s after: {sum(live_sandboxes(stack).values())}")
    # and the next run starts a new sandbox, cold, and succeeds
    ran = api.post("/v1/runs", json={"task_id": "examples/echo", "arguments": {"message": "m"}, "wait": True}).json()
    assert ran["status"] == "succeeded"
    assert worker.pids() and not set(worker.pids()) & set(pids)


def _running(pid: int) -> bool:
    """Whether a process is alive (not a zombie its parent has yet to reap)."""
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_a_sandbox_in_use_is_never_retired(api: httpx.Client, stack: LocalStack, short_idle: float) -> None:
    # Given a run that outlasts the idle time several times over
    body = {"task_id": "examples/sleep", "arguments": {"seconds": 3 * short_idle}, "wait": True}
    ran = api.post("/v1/runs", json=body).json()
    # Then its sandbox was not stopped under it
    assert ran["status"] == "succeeded" and ran["result"] == {"slept": 3 * short_idle}


@pytest.mark.parametrize("value", ["0", "-5", "soon", "1e9"])
def test_a_bad_idle_setting_stops_the_start_with_its_name(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TASKRUN_LOCAL_IDLE_SECONDS", value)
    with pytest.raises(ValueError, match="TASKRUN_LOCAL_IDLE_SECONDS"):
        idle_seconds_setting()


def test_the_idle_setting_reads_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKRUN_LOCAL_IDLE_SECONDS", "90")
    assert idle_seconds_setting() == 90.0
    monkeypatch.delenv("TASKRUN_LOCAL_IDLE_SECONDS")
    assert idle_seconds_setting() == 300.0


# A fresh interpreter (python -c, so the sandboxes' forkserver need not import a script):
# a stack that ran a flow, then a Batch call through its emulator.
RESTING_PROBE = """
import json, sys
import boto3, httpx
from taskrun.local.stack import LocalStack
stack = LocalStack()
key = stack.start()
host, port = stack.serve("127.0.0.1", 0, log=False).server_address[:2]
body = {"task_id": "examples/order", "arguments": {"order_id": "A-1", "quantity": 2}, "wait": True}
run = httpx.post(f"http://{host}:{port}/v1/runs", headers={"X-API-KEY": key}, json=body, timeout=120).json()
loaded = sorted(name for name in ("moto.ec2", "moto.batch.models") if name in sys.modules)
engine = "aws_durable_execution_sdk_python_testing" in sys.modules
batch = boto3.client("batch", endpoint_url=stack.emulator.endpoint, region_name=stack.region)
queues = batch.describe_job_queues()["jobQueues"]
body = {"task_id": "examples/order_code", "arguments": {"order_id": "A-2", "quantity": 1}, "wait": True}
code_flow = httpx.post(f"http://{host}:{port}/v1/runs", headers={"X-API-KEY": key}, json=body, timeout=120).json()
print(json.dumps({
    "flow": run.get("status"), "loaded": loaded, "queues": queues, "engine_before": engine,
    "code_flow": code_flow.get("status"), "engine_after": "aws_durable_execution_sdk_python_testing" in sys.modules,
}))
stack.stop()
"""


def test_a_stack_that_ran_a_flow_has_not_loaded_ec2_and_still_answers_batch() -> None:
    # Given a stack started in a process of its own, which runs a flow (moto's Step Functions
    # interpreter imports moto.batch, whose models import EC2's: about 60 MB at rest)
    probe = subprocess.run([sys.executable, "-c", RESTING_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    # Then the flow ran, EC2's and Batch's models were never loaded,
    assert seen["flow"] == "succeeded"
    assert seen["loaded"] == []
    # and Batch is still answered as moto answers it (its models load on first use)
    assert seen["queues"] == []
    # And the durable execution engine (its testing package: ~0.1 s of a start) was made by
    # the first code-first flow, not at the start, and ran it
    assert seen["engine_before"] is False
    assert seen["code_flow"] == "succeeded"
    assert seen["engine_after"] is True


WARM_PROBE = """
import gc, json
import httpx
from taskrun.local.stack import FIRST_FUNCTIONS, LocalStack
from tests.waiting import until
stack = LocalStack()
collections = []
gc.collect()  # so that no full collection is due as the start begins
gc.callbacks.append(lambda phase, info: phase == "start" and info["generation"] == 2 and collections.append(2))
key = stack.start()
during_start, collecting = len(collections), gc.isenabled()
runtime = stack.emulator.runtime
def ready():
    pools = runtime.pools()
    return all(name in pools and len(pools[name].pids()) == 1 for name in FIRST_FUNCTIONS)
until(ready, 60, "the warm sandboxes did not start", every=0.05)
before = {name: runtime.pools()[name].pids() for name in runtime.pools()}
host, port = stack.serve("127.0.0.1", 0, log=False).server_address[:2]
body = {"task_id": "examples/echo", "arguments": {"message": "hi"}, "wait": True}
run = httpx.post(f"http://{host}:{port}/v1/runs", headers={"X-API-KEY": key}, json=body, timeout=120).json()
after = {name: pool.pids() for name, pool in runtime.pools().items()}
print(json.dumps({
    "run": run.get("status"), "before": before, "after": after, "first": FIRST_FUNCTIONS,
    "full_collections_during_start": during_start, "collecting": collecting,
}))
stack.stop()
"""


def test_the_functions_of_a_first_run_have_a_sandbox_ready_at_the_start() -> None:
    """As Lambda initializes ahead of use: a stack just started has one sandbox, initialized
    and idle, for each of the authorizer, POST /v1/runs and the worker, and its first run is
    served by them rather than by sandboxes it starts."""
    probe = subprocess.run([sys.executable, "-c", WARM_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert probe.returncode == 0, probe.stderr[-3000:]
    seen = json.loads(probe.stdout.strip().splitlines()[-1])
    assert sorted(seen["before"]) == sorted(seen["first"])  # those, and no other function's
    assert all(len(pids) == 1 for pids in seen["before"].values())
    assert seen["run"] == "succeeded"
    for name in ("AuthorizerFunction", "StartRunFunction", "WorkerFunction"):
        assert seen["after"][name] == seen["before"][name]
    # and the start set off no full garbage collection (each walks every object, and the
    # start makes millions that live as long as the stack), leaving the collector on
    assert seen["full_collections_during_start"] == 0
    assert seen["collecting"] is True


def test_a_sandbox_shares_the_service_models_its_server_read_and_keeps_them_out_of_gc(api: httpx.Client) -> None:
    """Sandboxes are forked from one server that has read botocore's models: a session made in
    a sandbox finds them read (not read again into its own memory), and the server's objects
    are frozen, so no garbage collection in a sandbox copies the pages it shares."""
    ran = api.post("/v1/runs", json={"task_id": "sandbox/facts", "wait": True}).json()
    assert ran["status"] == "succeeded", ran
    assert ran["result"]["dynamodb_model_read"] is True
    assert ran["result"]["frozen_objects"] > 10_000


PRELOAD_PROBE = """
import json, os
import boto3
import taskrun.local.preload
os.environ.pop("AWS_PROFILE")  # the person's setting is back after the warming; a sandbox clears it
sessions = [boto3.session.Session(region_name="us-east-1") for _ in range(3)]
loaders = [session._session.get_component("data_loader") for session in sessions]
read = [key[1] for key in loaders[0]._cache if key[0] == "load_service_model"]
one = all(loader is loaders[0] for loader in loaders)
print(json.dumps({"one": one, "paths": loaders[0].search_paths, "read": read}))
"""


def test_the_sandboxes_server_warms_its_shared_loader_whatever_the_persons_aws_profile() -> None:
    """The server the sandboxes are forked from reads botocore's models without the person's
    AWS configuration (a profile that does not exist must not stop every sandbox), and its
    one loader, shared by every session, keeps each search path once."""
    env = {**os.environ, "AWS_PROFILE": "no-such-profile"}
    probe = subprocess.run([sys.executable, "-c", PRELOAD_PROBE], capture_output=True, text=True, env=env, timeout=60)
    assert probe.returncode == 0, probe.stderr[-2000:]
    seen = json.loads(probe.stdout)
    assert seen["one"] is True
    assert len(seen["paths"]) == len(set(seen["paths"]))
    assert {"dynamodb", "lambda", "s3", "stepfunctions"} <= set(seen["read"])
