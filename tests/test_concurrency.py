"""Concurrency limits through HTTP on the local stack: a task's limit, a limit per
concurrency_key, a limit shared by several tasks; the queue's order; slots freed when the
worker holding one dies or a release is lost. Each limited task counts itself in and out
while it runs (tests/user_tasks/control.py), so its peak is what ran at once."""

from __future__ import annotations

import collections
import itertools
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from taskrun.settings import get_settings
from tests.conftest import API_KEY
from tests.test_run_control import marks_in, started, waited


def peak(counter: Path) -> tuple[int, int]:
    """(running now, most at once) as the runs counted themselves."""
    now, most = (int(part) for part in counter.read_text().split())
    return now, most


def start_once(api: httpx.Client, body: dict[str, Any]) -> str:
    """Start a run as a careful client does: under an Idempotency-Key, sent again while the
    API is busy (429, 503) or answered too late (504: the start may have been made, and the
    key answers that run)."""
    key = uuid.uuid4().hex
    for _ in range(30):
        answer = api.post("/v1/runs", json=body, headers={"Idempotency-Key": key})
        if answer.status_code not in (429, 503, 504):
            break
        time.sleep(float(answer.headers.get("Retry-After", "0.5")))
    assert answer.status_code in (200, 201), answer.text
    return str(answer.json()["run_id"])


def test_never_more_than_n_at_once_under_200_runs_from_20_clients(base_url: str, tmp_path: Path) -> None:
    # Given a task limited to 3 runs at once, and 20 clients starting 10 runs each
    counter = tmp_path / "counter"
    body = {"task_id": "control/probe", "arguments": {"counter": str(counter), "nap": 0.05}}

    def client(_: int) -> list[str]:
        with httpx.Client(base_url=base_url, headers={"X-API-KEY": API_KEY}, timeout=60) as api:
            return [start_once(api, body) for _ in range(10)]

    with ThreadPoolExecutor(20) as pool:
        run_ids = [run_id for ids in pool.map(client, range(20)) for run_id in ids]
    # When every run has ended
    with httpx.Client(base_url=base_url, headers={"X-API-KEY": API_KEY}, timeout=60) as api:
        runs = [waited(api, run_id, timeout=180) for run_id in run_ids]
    statuses = collections.Counter(run["status"] for run in runs)
    now, most = peak(counter)
    print(f"\n  200 runs, 20 clients, limit 3: at most {most} at once; ended {dict(statuses)}")
    # Then all 200 succeeded, each once, and never more than 3 ran at once
    assert statuses == {"succeeded": 200}
    assert len(set(run_ids)) == 200 and now == 0
    assert 1 <= most <= 3


def test_runs_over_the_limit_wait_queued_and_start_in_arrival_order(api: httpx.Client, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    first = started(api, {"task_id": "control/single", "arguments": {"marks": str(marks), "nap": 6}})
    later = [started(api, {"task_id": "control/single", "arguments": {"marks": str(marks)}}) for _ in range(4)]
    # the later ones wait, queued (listed so, every page of the list followed), while the
    # first holds the limit's one slot
    assert [run["status"] for run in later] == ["queued"] * 4
    listed: set[str] = set()
    params: dict[str, Any] = {"task_id": "control/single", "status": "queued", "limit": 100}
    while True:
        page = api.get("/v1/runs", params=params).json()
        listed |= {run["run_id"] for run in page["runs"]}
        if not page["next_cursor"]:
            break
        params["cursor"] = page["next_cursor"]
    assert {run["run_id"] for run in later} <= listed
    runs = [waited(api, run["run_id"]) for run in [first, *later]]
    assert [run["status"] for run in runs] == ["succeeded"] * 5
    # one at a time, in the order they came
    starts = [run["started_at"] for run in runs]
    assert starts == sorted(starts)
    assert all(runs[n]["ended_at"] <= runs[n + 1]["started_at"] for n in range(4))
    assert marks_in(marks) == 5


def test_a_per_key_limit_holds_each_key_apart(api: httpx.Client, tmp_path: Path) -> None:
    # Given a task of at most 4 at once and 1 per key, 3 runs of each of 3 keys
    counters = {key: tmp_path / key for key in ("acme", "globex", "initech")}
    run_ids = []
    for _ in range(3):
        for key, counter in counters.items():
            body = {"task_id": "control/tenant", "arguments": {"counter": str(counter)}, "concurrency_key": key}
            run_ids.append(started(api, body)["run_id"])
    runs = [waited(api, run_id) for run_id in run_ids]
    assert [run["status"] for run in runs] == ["succeeded"] * 9
    assert all(run["concurrency_key"] in counters for run in runs)
    # Then never two runs of one key at once, while runs of different keys overlapped
    assert [peak(counter)[1] for counter in counters.values()] == [1, 1, 1]
    spans = sorted((run["started_at"], run["ended_at"]) for run in runs)
    overlapping = sum(1 for (_, end), (start, _) in itertools.pairwise(spans) if start < end)
    assert overlapping > 0


def test_a_limit_shared_by_two_tasks_holds_them_together(api: httpx.Client, tmp_path: Path) -> None:
    counter = tmp_path / "quota"
    run_ids = [
        started(api, {"task_id": f"control/quota_{side}", "arguments": {"counter": str(counter)}})["run_id"]
        for side in "abababab"
    ]
    runs = [waited(api, run_id) for run_id in run_ids]
    assert [run["status"] for run in runs] == ["succeeded"] * 8
    # never more than the shared limit of 2 at once, however fast the machine starts them
    now, most = peak(counter)
    assert now == 0 and 1 <= most <= 2, (now, most)
    task = api.get("/v1/tasks/control/quota_a").json()
    assert (task["concurrency"], task["concurrency_limit"]) == (2, "test-quota")


def test_a_queued_run_that_is_cancelled_never_starts_and_the_queue_goes_on(api: httpx.Client, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    body = {"task_id": "control/single", "arguments": {"marks": str(marks)}}
    first = started(api, {**body, "arguments": {"marks": str(marks), "nap": 2}})
    second, third = started(api, body), started(api, body)
    assert api.post(f"/v1/runs/{second['run_id']}/cancel").json()["status"] == "cancelled"
    assert waited(api, third["run_id"])["status"] == "succeeded"
    assert waited(api, first["run_id"])["status"] == "succeeded"
    after = api.get(f"/v1/runs/{second['run_id']}").json()
    assert after["status"] == "cancelled" and after["started_at"] is None
    assert marks_in(marks) == 2


def test_a_worker_that_dies_holding_the_slot_frees_it(api: httpx.Client, tmp_path: Path) -> None:
    # Given the one slot held by a run whose worker's sandbox dies (as Lambda ends one out of memory)
    marks = tmp_path / "marks"
    dying = started(api, {"task_id": "control/single", "arguments": {"marks": str(marks), "act": "die"}})
    queued = [started(api, {"task_id": "control/single", "arguments": {"marks": str(marks)}}) for _ in range(3)]
    # Then that run ends failed (the on-failure destination) and gives its slot back, and the
    # queued runs go on, each once
    assert waited(api, dying["run_id"])["status"] == "failed"
    ends = [waited(api, run["run_id"]) for run in queued]
    assert [e["status"] for e in ends] == ["succeeded"] * 3
    assert marks_in(marks) == 4


def test_a_slot_whose_release_was_lost_is_freed_past_its_holder_s_deadline(api: httpx.Client, tmp_path: Path) -> None:
    # Given the one slot held, past its deadline, by a run that ended without giving it back
    ended = waited(api, started(api, {"task_id": "examples/echo", "arguments": {"message": "x"}})["run_id"])
    table = boto3.resource("dynamodb").Table(get_settings().limits_table)
    table.put_item(Item={"slot": "task:control/single", "holders": {ended["run_id"]: 0}})
    # When a run of the limited task comes
    run = started(api, {"task_id": "control/single", "arguments": {"marks": str(tmp_path / "m")}})
    # Then it takes the slot the lost release left, and runs
    assert waited(api, run["run_id"])["status"] == "succeeded"
    holders = table.get_item(Key={"slot": "task:control/single"}, ConsistentRead=True)["Item"]["holders"]
    assert ended["run_id"] not in holders


@pytest.mark.parametrize(
    ("task_id", "change"),
    [
        ("control/tenant", {"concurrency_key": ""}),
        ("control/tenant", {"concurrency_key": "a b"}),
        ("control/tenant", {"concurrency_key": "k" * 65}),
        ("control/tenant", {"concurrency_key": 7}),
        ("control/single", {"concurrency_key": "tenant-1"}),  # a task with no per-key limit
    ],
)
def test_a_bad_concurrency_key_is_refused(api: httpx.Client, task_id: str, change: dict[str, Any]) -> None:
    arguments = {"counter": "/x"} if task_id == "control/tenant" else {"marks": "/x"}
    answer = api.post("/v1/runs", json={"task_id": task_id, "arguments": arguments, **change})
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["location"] == "body.concurrency_key"
