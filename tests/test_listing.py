"""Listing runs: newest first across the time shards, a cursor that neither repeats nor
skips, and a bounded number of reads per request whatever the filter."""

from __future__ import annotations

from typing import Any

import boto3
import httpx
import pytest

from taskrun import store as store_module
from taskrun.local.stack import LocalStack
from taskrun.models import TriggeredBy
from taskrun.settings import get_settings
from taskrun.store import DynamoRunStore, RunFilter


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
    body = {"task_id": "team/add", "arguments": {"a": 1}}
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


def test_a_filter_that_matches_little_answers_after_a_few_reads_and_its_cursor_reaches_every_match(
    stack: LocalStack, api: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DynamoRunStore(get_settings().runs_table)
    for n in range(20):
        api.post("/v1/runs", json={"task_id": "team/add", "arguments": {"a": n}})
    expected: list[str] = []
    cursor: str | None = None
    while True:  # every match, read with the usual read size
        runs, cursor = store.list(RunFilter(triggered_by=TriggeredBy.API), 1_000, cursor)
        expected += [run.run_id for run in runs]
        if cursor is None:
            break
    assert len(expected) >= 20

    # With a small read size, each request stops after its reads, even with nothing found
    monkeypatch.setattr(store_module, "FILTERED_READ_SIZE", 3)
    calls = 0
    original = store.table.query

    def counted(**request: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(**request)

    monkeypatch.setattr(store.table, "query", counted)
    few, cursor = store.list(RunFilter(triggered_by=TriggeredBy.SCHEDULE), 20, None)
    assert cursor is not None and len(few) < 20
    assert all(run.triggered_by is TriggeredBy.SCHEDULE for run in few)
    assert calls <= store_module.MAX_READS_PER_LIST

    # and following the cursors gives every match once, newest first
    found: list[str] = []
    cursor = None
    pages = 0
    while True:
        calls = 0
        runs, cursor = store.list(RunFilter(triggered_by=TriggeredBy.API), 5, cursor)
        assert calls <= store_module.MAX_READS_PER_LIST and len(runs) <= 5
        found += [run.run_id for run in runs]
        pages += 1
        if cursor is None:
            break
    assert found == expected
    assert pages > len(expected) // 5
