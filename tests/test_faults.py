"""Fault injection on the local stack: for each fault, many runs, each with a webhook to a
receiver on this machine. For every run the tests assert:

- exactly one terminal state: the runs table's stream shows one move from pending or
  running into an ended status, and none out of it afterwards;
- the task's code ran at most once (the task leaves a mark each time it starts);
- the receiver accepted (2xx) the run's webhook exactly once, under one webhook-id, signed
  as the reference Standard Webhooks library verifies.

Each test prints its counts (`pytest -s tests/test_faults.py`).
"""

from __future__ import annotations

import collections
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config

from taskrun.local.faults import Faults
from taskrun.local.stack import LocalStack
from tests.conftest import WEBHOOK_RETRY_DELAYS
from tests.receiver import Receiver, fail_first, hang_first
from tests.test_deliveries import deliveries, first_attempt

RUNS = 20  # per fault; eleven faults
TERMINAL = {"succeeded", "failed", "timed_out", "cancelled"}


@pytest.fixture(scope="module")
def marks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("marks")


@pytest.fixture(autouse=True)
def no_faults_left(stack: LocalStack) -> Iterator[None]:
    yield
    stack.emulator.runtime.faults.clear()


def code_runs(marks: Path, run_id: str) -> int:
    return len(list(marks.glob(f"{run_id}.*")))


def tried_again(send: Callable[[], httpx.Response], tries: int = 20) -> tuple[httpx.Response, int]:
    """A request's answer, the request sent again after the answer's Retry-After while the
    API answers 429 or 503 (at most `tries` in all), as a careful client does; and how many
    tries again it took."""
    retries = 0
    for _ in range(tries):
        answer = send()
        if answer.status_code not in (429, 503):
            break
        retries += 1
        time.sleep(float(answer.headers.get("Retry-After", "0.2")))
    return answer, retries


def start_runs(api: httpx.Client, bodies: list[dict[str, Any]]) -> tuple[list[str], int]:
    """Start each run (an Idempotency-Key on each, tried again while the API answers 429 or
    503); the run ids and how many tries again it took."""
    run_ids: list[str] = []
    retries = 0
    for body in bodies:
        key = uuid.uuid4().hex
        answer, tries_again = tried_again(partial(api.post, "/v1/runs", json=body, headers={"Idempotency-Key": key}))
        retries += tries_again
        assert answer.status_code in (200, 201), answer.text
        run_ids.append(answer.json()["run_id"])
    return run_ids, retries


def ended(api: httpx.Client, run_ids: list[str], timeout: float = 60) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    runs: dict[str, dict[str, Any]] = {}
    for run_id in run_ids:
        while True:
            run = api.get(f"/v1/runs/{run_id}", params={"wait": "true", "wait_timeout": 5}).json()
            if run["status"] in TERMINAL:
                runs[run_id] = run
                break
            assert time.monotonic() < deadline, run
    return runs


class StatusMoves:
    """Every status change of the runs table's runs from this module's start on, read from
    the table's stream as it goes (so each read takes only what is new)."""

    def __init__(self, region: str) -> None:
        dynamodb = boto3.client("dynamodb", region_name=region)
        self.streams = boto3.client(
            "dynamodbstreams", region_name=region, config=Config(account_id_endpoint_mode="disabled")
        )
        arn = dynamodb.describe_table(TableName="RunsTable")["Table"]["LatestStreamArn"]
        self.iterators = [
            self.streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST")[
                "ShardIterator"
            ]
            for shard in self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        ]
        self.moves: dict[str, list[tuple[str | None, str]]] = collections.defaultdict(list)

    def read(self) -> dict[str, list[tuple[str | None, str]]]:
        for index, iterator in enumerate(self.iterators):
            while iterator:
                page = self.streams.get_records(ShardIterator=iterator, Limit=1000)
                iterator = page.get("NextShardIterator")
                self.iterators[index] = iterator
                for record in page["Records"]:
                    change = record["dynamodb"]
                    if "NewImage" not in change:
                        continue
                    old = change.get("OldImage", {}).get("status", {}).get("S")
                    new = change["NewImage"]["status"]["S"]
                    if old != new:
                        self.moves[change["Keys"]["run_id"]["S"]].append((old, new))
                if not page["Records"]:
                    break
        return self.moves


@pytest.fixture(scope="module")
def status_moves(stack: LocalStack) -> StatusMoves:
    return StatusMoves(stack.region)


@dataclass
class Trial:
    """What a fault test works with: the stack, its API, a receiver for the runs' webhooks,
    where the task leaves its marks, and the runs table's status changes."""

    stack: LocalStack
    api: httpx.Client
    receiver: Receiver
    marks: Path
    stream: StatusMoves

    @property
    def faults(self) -> Faults:
        return self.stack.emulator.runtime.faults

    def bodies(self, count: int = RUNS, task_id: str = "fault/act", **arguments: Any) -> list[dict[str, Any]]:
        return [
            {"task_id": task_id, "arguments": {"marks": str(self.marks), **arguments}, "webhook_url": self.receiver.url}
            for _ in range(count)
        ]

    def start(self, count: int = RUNS, **arguments: Any) -> tuple[list[str], int]:
        return start_runs(self.api, self.bodies(count, **arguments))

    def check(self, run_ids: list[str], label: str, expect: Callable[[dict[str, Any]], bool], retries: int = 0) -> None:
        """Assert exactly one terminal state, code run at most once and one accepted
        webhook for every run, and print the counts."""
        api, receiver = self.api, self.receiver
        runs = ended(api, run_ids)
        assert len(set(run_ids)) == len(run_ids)
        receiver.wait_for(lambda: all(receiver.accepted_runs().get(run_id) for run_id in run_ids), timeout=60)
        time.sleep(0.3)  # a late duplicate, if there were one, would arrive by now
        moves = self.stream.read()
        counts: collections.Counter[str] = collections.Counter()
        attempts = 0
        for run_id, run in runs.items():
            counts[run["status"]] += 1
            assert expect(run), (label, run["status"], run["error"])
            endings = [(old, new) for old, new in moves[run_id] if new in TERMINAL]
            assert len(endings) == 1 and endings[0][0] in (None, "pending", "running"), (label, moves[run_id])
            assert moves[run_id][-1] == endings[0], (label, run_id, moves[run_id])  # nothing moved it out again
            assert code_runs(self.marks, run_id) <= 1, (label, run_id)
            received = receiver.of_run(run_id)
            assert len({r.webhook_id for r in received}) == 1, (label, run_id)
            accepted = receiver.accepted(received[0].webhook_id)
            assert len(accepted) == 1, (label, run_id, [(r.answered, r.at) for r in received])
            assert receiver.verify(accepted[0])["data"]["status"] == run["status"]
            (delivery,) = deliveries(api, run_id)
            attempts += len(delivery["attempts"])
        total_code = sum(code_runs(self.marks, run_id) for run_id in run_ids)
        hits = self.faults.clear()
        print(
            f"\nfault {label}: {len(runs)} runs, ended {dict(sorted(counts.items()))}, one terminal state each,"
            f" task code ran {total_code} times (at most once a run), faults injected {sum(hits.values())},"
            f" client retries {retries}, webhook attempts {attempts}, each accepted once"
        )


@pytest.fixture
def trial(stack: LocalStack, api: httpx.Client, receiver: Receiver, marks: Path, status_moves: StatusMoves) -> Trial:
    return Trial(stack, api, receiver, marks, status_moves)


def succeeded(run: dict[str, Any]) -> bool:
    return bool(run["status"] == "succeeded")


def test_the_task_raises(trial: Trial) -> None:
    run_ids, _ = trial.start(act="raise")
    trial.check(
        run_ids, "task raises", lambda run: run["status"] == "failed" and run["error"]["type"] == "execution_error"
    )


def test_the_task_hangs_past_its_timeout(trial: Trial) -> None:
    run_ids, _ = trial.start(act="hang")
    trial.check(
        run_ids,
        "task hangs past its timeout",
        lambda run: run["status"] == "timed_out" and run["error"]["type"] == "timeout",
    )


def test_the_sandbox_dies(trial: Trial) -> None:
    run_ids, _ = trial.start(act="die")
    trial.check(
        run_ids, "sandbox dies", lambda run: run["status"] == "failed" and run["error"]["type"] == "execution_error"
    )


def test_the_async_invoke_is_throttled(trial: Trial) -> None:
    trial.faults.inject("throttle", "WorkerFunction", times=RUNS, every=2)
    run_ids, _ = trial.start()
    assert trial.faults.hits("throttle", "WorkerFunction") >= RUNS // 2 - 1
    trial.check(run_ids, "async invoke throttled", succeeded)


def test_the_async_invoke_is_delivered_twice(trial: Trial) -> None:
    trial.faults.inject("duplicate", "WorkerFunction", times=RUNS)
    run_ids, _ = trial.start(act="nap", seconds=0.2)
    assert trial.faults.hits("duplicate", "WorkerFunction") == RUNS
    trial.check(
        run_ids,
        "async invoke delivered twice",
        lambda run: run["status"] == "succeeded" and code_runs(trial.marks, run["run_id"]) == 1,
    )


def test_the_store_throttles_writes(trial: Trial) -> None:
    trial.faults.inject("throttle_writes", "RunsTable", times=1000, every=3)
    run_ids, retries = trial.start()
    trial.check(run_ids, "store throttles every third write", succeeded, retries=retries)


def test_a_cancel_races_the_ending(trial: Trial) -> None:
    """Each run naps 0.3 s; a cancel follows its start by 0 to 0.6 s, so some cancels come
    first and some find the run ended (409)."""
    answers: dict[str, int] = {}
    threads = []

    def cancel(run_id: str, after: float) -> None:
        time.sleep(after)
        answer, _ = tried_again(partial(trial.api.post, f"/v1/runs/{run_id}/cancel"), tries=5)
        answers[run_id] = answer.status_code

    run_ids = []
    for body in trial.bodies(act="nap", seconds=0.3):
        (run_id,), _ = start_runs(trial.api, [body])
        run_ids.append(run_id)
        threads.append(threading.Thread(target=cancel, args=(run_id, random.uniform(0.0, 0.6))))
        threads[-1].start()
    for thread in threads:
        thread.join()
    assert set(answers.values()) <= {200, 409}

    def agrees(run: dict[str, Any]) -> bool:
        won = answers[run["run_id"]] == 200
        return bool(run["status"] == ("cancelled" if won else "succeeded"))

    trial.check(run_ids, "cancel races the ending", agrees)
    won = sum(1 for answer in answers.values() if answer == 200)
    print(f"  cancels that came first: {won}, that found the run ended (409): {len(answers) - won}")


def test_the_receiver_answers_500(trial: Trial) -> None:
    trial.receiver.behaviour = fail_first(2, status=500)
    run_ids, _ = trial.start()
    trial.check(run_ids, "receiver answers 500 twice", succeeded)
    assert all(len(trial.receiver.of_run(run_id)) == 3 for run_id in run_ids)


def test_the_receiver_hangs(trial: Trial) -> None:
    trial.receiver.behaviour = hang_first(3.0)
    run_ids, _ = trial.start()
    trial.check(run_ids, "receiver hangs past the timeout", succeeded)


# Attempts a while apart here, so that the receiver is back before a delivery runs out of
# them however long the first attempt takes to be seen on a busy machine (1, 3, 7, 15 s).
SLOWER_RETRIES = {"TASKRUN_WEBHOOK_RETRY_DELAYS": "1,2,4,8"}
DELIVERING = ["NotifierFunction", "WebhookFunction", "SweeperFunction"]


def test_the_receiver_is_down_then_back(trial: Trial) -> None:
    runtime = trial.stack.emulator.runtime
    runtime.update_environment(DELIVERING, SLOWER_RETRIES)
    try:
        trial.receiver.stop()
        run_ids, _ = trial.start()
        first = run_ids[0]
        first_attempt(trial.api, first, timeout=20)
        trial.receiver.start()  # back: the next attempts reach it
        trial.check(run_ids, "receiver down, then back", succeeded)
    finally:
        runtime.update_environment(DELIVERING, {"TASKRUN_WEBHOOK_RETRY_DELAYS": WEBHOOK_RETRY_DELAYS})
    refused = [
        run_id
        for run_id in run_ids
        if "could not connect" in (deliveries(trial.api, run_id)[0]["attempts"][0]["error"] or "")
    ]
    assert first in refused
    print(f"  first attempts refused while it was down: {len(refused)}")


def test_a_flow_step_is_throttled(trial: Trial) -> None:
    # at most RUNS throttles in all: fewer than the step's retries, however they fall
    trial.faults.inject("throttle", "WorkerFunction", times=RUNS, every=2)
    run_ids, _ = start_runs(trial.api, trial.bodies(task_id="fault/step"))
    ended(trial.api, run_ids)
    throttled = trial.faults.hits("throttle", "WorkerFunction")
    trial.check(run_ids, "flow step throttled (retried by its state machine)", succeeded)
    attempts = 0
    for run_id in run_ids:
        (step,) = trial.api.get(f"/v1/runs/{run_id}/history").json()["steps"]
        assert step["status"] == "succeeded"
        attempts += step["attempts"]
        assert code_runs(trial.marks, run_id) == 1  # the code ran on the one attempt that was not throttled
    # Step Functions counted every throttled invoke as an attempt of its own, and no more
    assert attempts == RUNS + throttled
