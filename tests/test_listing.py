"""Listing runs: newest first across the time shards, a cursor that neither repeats nor
skips, a bounded number of reads per request whatever the filter, and the status a run has
now (the indexes hold no status: the runs are read from the table)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from taskrun.local.stack import LocalStack
from taskrun.models import RunStatus, RunSummary, TriggeredBy
from taskrun.runs import listing
from taskrun.runs.listing import RunFilter
from taskrun.runs.store import DynamoRunStore
from taskrun.settings import get_settings
from tests.waiting import until


def all_pages(api: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    while True:
        page = api.get("/v1/runs", params=params)
        assert page.status_code == 200, page.text
        runs += page.json()["runs"]
        if page.json()["next_cursor"] is None:
            return runs
        params["cursor"] = page.json()["next_cursor"]


def test_the_unfiltered_list_merges_the_shards_newest_first(api: httpx.Client) -> None:
    # Given 30 new runs (spread over the by_time shards)
    body = {"task_id": "team/add", "arguments": {"a": 1}, "wait": True}  # ended before the next test
    ids = [api.post("/v1/runs", json=body).json()["run_id"] for _ in range(30)]
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(get_settings().runs_table)
    shards = {table.get_item(Key={"run_id": run_id})["Item"]["kind"] for run_id in ids}
    assert len(shards) > 1

    # When every run is listed, seven at a time
    listed = [run["run_id"] for run in all_pages(api, limit=7)]

    # Then each run appears once, newest first, ours among them in the order they were made
    assert len(listed) == len(set(listed))
    assert listed == sorted(listed, reverse=True)
    assert [run_id for run_id in listed if run_id in set(ids)] == sorted(ids, reverse=True)


def test_a_run_is_listed_as_active_only_while_it_is(api: httpx.Client) -> None:
    # Given a run that is running
    run = api.post("/v1/runs", json={"task_id": "examples/sleep", "arguments": {"seconds": 30}}).json()
    deadline = time.monotonic() + 30
    while api.get(f"/v1/runs/{run['run_id']}").json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)

    def listed(status: str) -> list[dict[str, Any]]:
        return [r for r in all_pages(api, status=status, limit=50) if r["run_id"] == run["run_id"]]

    # Then it is listed as running, as a list shows a run (no arguments)
    [shown] = listed("running")
    assert shown["status"] == "running" and shown["started_at"] and "arguments" not in shown
    assert listed("pending") == [] and listed("cancelled") == []

    # When it is cancelled, it is listed as cancelled and no longer as running
    assert api.post(f"/v1/runs/{run['run_id']}/cancel").status_code == 200
    assert listed("running") == []
    [shown] = listed("cancelled")
    assert shown["error"]["type"] == "cancelled" and shown["ended_at"]
    # and the sweeper's own read of the active runs no longer sees it
    store = DynamoRunStore(get_settings().runs_table)
    active = store.list(RunFilter(status=RunStatus.RUNNING), 100, None)[0]
    assert run["run_id"] not in {r.run_id for r in active}


def wait_listed(api: httpx.Client, status: str, tag: str, seconds: float = 30) -> dict[str, Any]:
    """The one run carrying `tag` that a list of runs with `status` shows, once it shows one."""
    [run] = until(lambda: all_pages(api, status=status, tag=tag, limit=50), seconds, f"no {status} run tagged {tag}")
    return run


def runs_table() -> Any:
    return boto3.resource("dynamodb", region_name="us-east-1").Table(get_settings().runs_table)


@dataclass
class Held:
    """A run of team/held, started from a client of its own on a thread: held running until
    its gate opens (on leaving `held_run`); `answer` is its start request's answer."""

    tag: str
    body: dict[str, Any]
    answer: Future[httpx.Response]


def held_body(tmp_path: Path) -> dict[str, Any]:
    """A waited run of team/held, tagged, with a gate of its own."""
    gate, tag = tmp_path / f"gate-{uuid.uuid4().hex[:8]}", f"held-{uuid.uuid4().hex[:8]}"
    return {"task_id": "team/held", "arguments": {"gate": str(gate)}, "tags": [tag], "wait": True}


@contextlib.contextmanager
def held_run(
    api: httpx.Client, base_url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Iterator[Held]:
    """The run `body` (held_body) asks for, held while this lasts, released on the way out
    and its request answered by then."""
    with httpx.Client(base_url=base_url, headers=api.headers, timeout=60) as other, ThreadPoolExecutor(1) as pool:
        answer = pool.submit(other.post, "/v1/runs", json=body, headers=headers)
        try:
            yield Held(body["tags"][0], body, answer)
        finally:
            Path(body["arguments"]["gate"]).touch()
            answer.result(timeout=60)


def test_a_run_its_request_waits_for_is_listed_as_running_though_it_never_enters_the_active_index(
    api: httpx.Client, base_url: str, tmp_path: Path
) -> None:
    # Given a run the worker runs while its request waits, held running
    with held_run(api, base_url, held_body(tmp_path)) as held:
        tag = held.tag
        # Then lists of running runs show it, once, the sweeper's read of them too
        shown = wait_listed(api, "running", tag)
        sweepers = DynamoRunStore(get_settings().runs_table).list(RunFilter(status=RunStatus.RUNNING), 1000, None)
        assert [run.run_id for run in sweepers[0]].count(shown["run_id"]) == 1
        # though the `active` index holds no entry for it (two write units spared)
        assert "active" not in runs_table().get_item(Key={"run_id": shown["run_id"]})["Item"]
    answer = held.answer.result()
    assert answer.status_code == 201 and answer.json()["status"] == "succeeded", answer.text
    assert answer.json()["run_id"] == shown["run_id"]
    # And once it has ended it is listed as such, and no longer as running
    assert all_pages(api, status="running", tag=tag) == []
    assert [run["run_id"] for run in all_pages(api, status="succeeded", tag=tag)] == [shown["run_id"]]


def test_a_run_its_request_waits_for_enters_the_active_index_when_it_outlives_the_request(
    api: httpx.Client, base_url: str, stack: LocalStack, tmp_path: Path
) -> None:
    table = runs_table()
    # Given a waited run the worker refuses to run synchronously (throttled): it is handed over
    faults = stack.emulator.runtime.faults
    faults.inject("throttle", "WorkerFunction", times=1)
    try:
        with held_run(api, base_url, held_body(tmp_path)) as held:
            # Then while it runs it is in the `active` index, and listed as running
            shown = wait_listed(api, "running", held.tag)
            assert faults.hits("throttle", "WorkerFunction") == 1
            assert "active" in table.get_item(Key={"run_id": shown["run_id"]})["Item"]
    finally:
        faults.clear()
    answer = held.answer.result().json()
    assert answer["run_id"] == shown["run_id"] and answer["status"] == "succeeded", answer

    # Given a waited run whose attempt fails and is retried later (6 s on)
    marks = tmp_path / "marks"
    marks.mkdir()
    body = {"task_id": "control/patient", "arguments": {"marks": str(marks)}, "wait": True, "wait_timeout": 9}
    retried = api.post("/v1/runs", json=body).json()
    try:
        # Then, put back in the queue for its next attempt, it is in the `active` index too
        assert retried["status"] in ("queued", "running") and retried["attempts"], retried
        assert "active" in table.get_item(Key={"run_id": retried["run_id"]})["Item"]
    finally:
        api.post(f"/v1/runs/{retried['run_id']}/cancel")


def test_a_waited_run_launched_by_a_repeated_request_under_an_older_id_enters_the_active_index(
    api: httpx.Client, base_url: str, stack: LocalStack, tmp_path: Path
) -> None:
    # Given a request with an idempotency key that named its run and died before recording it
    # (its runs table's writes refused), then repeated: the run is made under the first one's
    # id, made seconds before
    body, headers = held_body(tmp_path), {"Idempotency-Key": f"replay-{uuid.uuid4().hex}"}
    faults = stack.emulator.runtime.faults
    faults.inject("throttle_writes", "RunsTable", times=1000)
    try:
        first = api.post("/v1/runs", json=body, headers=headers)
    finally:
        faults.clear()
    assert first.status_code == 429 and not all_pages(api, tag=body["tags"][0]), first.text
    # When the request is repeated, the run is made under the first one's id, made seconds ago
    with held_run(api, base_url, body, headers) as held:
        # Then it is not short: lists by time would not reach it; it is in the `active` index
        shown = wait_listed(api, "running", held.tag)
        assert "active" in runs_table().get_item(Key={"run_id": shown["run_id"]})["Item"]
    answer = held.answer.result()
    assert answer.json()["run_id"] == shown["run_id"] and answer.json()["status"] == "succeeded", answer.text


def test_a_list_of_active_runs_reads_both_indexes_within_its_bound_and_its_cursor_reaches_each_once(
    api: httpx.Client, base_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given runs of the last minute that ended while their requests waited (in `by_time` only)
    for n in range(12):
        ended = api.post("/v1/runs", json={"task_id": "team/add", "arguments": {"a": n}, "wait": True})
        assert ended.json()["status"] == "succeeded", ended.text
    # and two held running, behind one gate: one its request waits for (short), one not (in `active`)
    with held_run(api, base_url, held_body(tmp_path)) as held:
        short = wait_listed(api, "running", held.tag)["run_id"]
        unwaited = api.post("/v1/runs", json={**held.body, "wait": False}).json()["run_id"]
        until(lambda: len(all_pages(api, status="running", tag=held.tag)) >= 2, 30)

        # When the running runs are listed one at a time, with a small read size
        store = DynamoRunStore(get_settings().runs_table)
        monkeypatch.setattr(listing, "FILTERED_READ_SIZE", 3)
        original = store.table.query
        calls = 0

        def counted(**request: Any) -> Any:
            nonlocal calls
            calls += 1
            return original(**request)

        monkeypatch.setattr(store.table, "query", counted)
        listed: list[str] = []
        cursor: str | None = None
        while True:
            calls = 0
            runs, cursor = store.list(RunFilter(status=RunStatus.RUNNING), 1, cursor)
            # Then each request makes at most two queries of each of the eight partitions
            assert calls <= 2 * 8
            listed += [run.run_id for run in runs]
            if cursor is None:
                break
    # and the cursors reach both, once each, newest first
    assert listed == sorted(set(listed), reverse=True)
    assert [run_id for run_id in listed if run_id in (short, unwaited)] == [unwaited, short]


@pytest.mark.parametrize(
    ("rare", "common"),
    [
        (RunFilter(triggered_by=TriggeredBy.SCHEDULE), RunFilter(triggered_by=TriggeredBy.API)),
        (RunFilter(status=RunStatus.TIMED_OUT), RunFilter(task_id="examples/echo", status=RunStatus.SUCCEEDED)),
        (RunFilter(status=RunStatus.FAILED), RunFilter(status=RunStatus.SUCCEEDED)),
    ],
    ids=["trigger", "status-of-a-task", "status"],
)
def test_a_filter_that_matches_little_answers_after_a_few_reads_and_its_cursor_reaches_every_match(
    stack: LocalStack, api: httpx.Client, monkeypatch: pytest.MonkeyPatch, rare: RunFilter, common: RunFilter
) -> None:
    store = DynamoRunStore(get_settings().runs_table)
    for n in range(20):  # runs that have ended: what matches stays put while it is read
        answer = api.post("/v1/runs", json={"task_id": "examples/echo", "arguments": {"message": str(n)}, "wait": True})
        assert answer.json()["status"] == "succeeded"
    expected: list[str] = []
    cursor: str | None = None
    while True:  # every match, read with the usual read size
        runs, cursor = store.list(common, 1_000, cursor)
        expected += [run.run_id for run in runs]
        if cursor is None:
            break
    assert len(expected) >= 20

    # With a small read size, each request stops after its reads, even with nothing found
    monkeypatch.setattr(listing, "FILTERED_READ_SIZE", 3)
    calls = batches = 0
    original = store.table.query
    original_batch = store.table.meta.client.batch_get_item

    def counted(**request: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(**request)

    def counted_batch(**request: Any) -> Any:
        nonlocal batches
        batches += 1
        return original_batch(**request)

    monkeypatch.setattr(store.table, "query", counted)
    monkeypatch.setattr(store.table.meta.client, "batch_get_item", counted_batch)
    few, cursor = store.list(rare, 20, None)
    assert cursor is not None and len(few) < 20
    assert all(_matches(run, rare) for run in few)
    assert calls <= listing.MAX_READS_PER_LIST and batches <= 2 * listing.MAX_READS_PER_LIST

    # and following the cursors gives every match once, newest first
    found: list[str] = []
    cursor = None
    pages = 0
    while True:
        calls = batches = 0
        runs, cursor = store.list(common, 5, cursor)
        assert calls <= listing.MAX_READS_PER_LIST and batches <= 2 * listing.MAX_READS_PER_LIST
        assert len(runs) <= 5 and all(_matches(run, common) for run in runs)
        found += [run.run_id for run in runs]
        pages += 1
        if cursor is None:
            break
    assert found == expected
    assert pages > len(expected) // 5


def _matches(run: RunSummary, filters: RunFilter) -> bool:
    return all(
        wanted is None or getattr(run, name) == wanted
        for name, wanted in (
            ("status", filters.status),
            ("task_id", filters.task_id),
            ("triggered_by", filters.triggered_by),
        )
    )


def test_a_cursor_given_for_one_filter_is_refused_for_another(api: httpx.Client) -> None:
    # Given a page of the succeeded runs, with a cursor to the next
    for _ in range(3):
        api.post("/v1/runs", json={"task_id": "team/add", "arguments": {"a": 1}, "wait": True})
    page = api.get("/v1/runs", params={"status": "succeeded", "limit": 1}).json()
    cursor = page["next_cursor"]
    assert cursor
    # Then it goes on for that filter, and is refused for another status or trigger
    assert api.get("/v1/runs", params={"status": "succeeded", "limit": 1, "cursor": cursor}).status_code == 200
    for other in ({"status": "failed"}, {"status": "succeeded", "triggered_by": "api"}, {}):
        refused = api.get("/v1/runs", params={**other, "limit": 1, "cursor": cursor})
        assert refused.status_code == 422, other
        assert refused.json()["errors"][0]["location"] == "query.cursor"
