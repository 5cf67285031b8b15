"""Run control through HTTP on the local stack: cancels that stop the task's code, tags,
delays and expiry, retries with backoff, re-runs and batches."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskrun.local.stack import LocalStack


def started(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    answer = api.post("/v1/runs", json=body)
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def waited(api: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    """The run once it has ended (several waits of the API's own cap)."""
    deadline = time.monotonic() + timeout
    while True:
        run = api.get(f"/v1/runs/{run_id}", params={"wait": "true", "wait_timeout": 10}).json()
        if run["is_done"] or time.monotonic() > deadline:
            return dict(run)


def until(check: Any, timeout: float = 30, every: float = 0.1) -> Any:
    """The first truthy answer of `check`, asked until `timeout`; the last answer otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(every)


def settled(path: Path, quiet: float = 1.5, timeout: float = 20) -> list[str]:
    """The lines of a file once it has stopped growing for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    seen = path.read_text() if path.exists() else ""
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = path.read_text() if path.exists() else ""
        if now == seen:
            break
        seen = now
    return seen.splitlines()


def test_a_cancel_stops_the_running_code_and_keeps_what_it_logged(api: httpx.Client, tmp_path: Path) -> None:
    # Given a script that ticks into a file ten times a second, running
    marks = tmp_path / "ticks"
    run = started(api, {"task_id": "control/ticker", "arguments": {"marks": str(marks)}})
    assert until(lambda: marks.exists() and len(marks.read_text().splitlines()) >= 5)
    # When it is cancelled
    cancelled = api.post(f"/v1/runs/{run['run_id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    # Then its code stops: the file stops growing, far short of the task's end
    ticks = settled(marks)
    assert "done" not in ticks and len(ticks) < 100
    # and the run stays cancelled, with what the task printed before it was stopped
    logs = until(lambda: api.get(f"/v1/runs/{run['run_id']}/logs").json()["text"])
    assert "tick 0\n" in logs and f"tick {int(ticks[-1])}" in logs
    assert f"tick {int(ticks[-1]) + 2}" not in logs
    final = api.get(f"/v1/runs/{run['run_id']}").json()
    assert final["status"] == "cancelled" and final["error"]["type"] == "cancelled"


def marks_in(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


def test_a_delayed_run_waits_queued_then_runs(api: httpx.Client) -> None:
    # When a run is started with a delay (long enough for the list below to come first on a
    # loaded machine)
    run = started(api, {"task_id": "examples/greet", "arguments": {"name": "Ada"}, "delay": 5, "tags": ["later"]})
    # Then it is queued until then, with its start time, and listed as queued
    assert run["status"] == "queued" and not run["is_done"] and run["started_at"] is None
    assert 4.9 <= seconds_between(run["created_at"], run["next_attempt_at"]) <= 5.1
    queued = api.get("/v1/runs", params={"status": "queued", "tag": "later"}).json()["runs"]
    assert run["run_id"] in [listed["run_id"] for listed in queued]
    # and it runs once its time has come
    ended = waited(api, run["run_id"])
    assert ended["status"] == "succeeded" and ended["result"] == {"greeting": "hello Ada!"}
    assert seconds_between(run["created_at"], ended["started_at"]) >= 5
    assert ended["next_attempt_at"] is None and ended["attempt"] == 1


def test_a_run_at_time_starts_the_run_then(api: httpx.Client) -> None:
    start_at = datetime.now(UTC) + timedelta(seconds=2)
    run = started(api, {"task_id": "examples/greet", "arguments": {"name": "Bo"}, "run_at": start_at.isoformat()})
    assert run["status"] == "queued"
    ended = waited(api, run["run_id"])
    assert ended["status"] == "succeeded"
    assert datetime.fromisoformat(ended["started_at"]) >= start_at


def test_a_queued_run_that_is_cancelled_never_starts(api: httpx.Client, tmp_path: Path) -> None:
    marks = tmp_path / "ticks"
    run = started(api, {"task_id": "control/ticker", "arguments": {"marks": str(marks)}, "delay": 1.5})
    cancelled = api.post(f"/v1/runs/{run['run_id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    time.sleep(3)  # past its start time: its wake comes, and finds it cancelled
    after = api.get(f"/v1/runs/{run['run_id']}").json()
    assert after["status"] == "cancelled" and after["started_at"] is None
    assert not marks.exists()


def test_a_run_not_started_within_its_ttl_ends_expired_without_running(api: httpx.Client, stack: LocalStack) -> None:
    # Given a worker whose invocations are throttled for a while (Lambda holds the event)
    stack.emulator.runtime.faults.inject("throttle", "WorkerFunction", times=3)
    try:
        # When a run that must start within half a second is started
        run = started(api, {"task_id": "examples/greet", "arguments": {"name": "Ada"}, "ttl": 0.5})
        assert run["expires_at"] is not None
        ended = waited(api, run["run_id"])
    finally:
        stack.emulator.runtime.faults.clear()
    # Then it ends failed as expired, and its task never ran
    assert ended["status"] == "failed" and ended["error"]["type"] == "expired"
    assert ended["started_at"] is None and ended["result"] is None


def test_tags_are_kept_shown_and_filter_lists(api: httpx.Client) -> None:
    tag = f"batch-{uuid.uuid4().hex[:8]}"
    tagged = [
        started(api, {"task_id": "examples/echo", "arguments": {"message": str(n)}, "tags": [tag, "echo"]})
        for n in range(3)
    ]
    started(api, {"task_id": "examples/echo", "arguments": {"message": "9"}, "tags": ["other"]})
    assert tagged[0]["tags"] == [tag, "echo"]
    listed = api.get("/v1/runs", params={"tag": tag}).json()
    assert [run["run_id"] for run in listed["runs"]] == [run["run_id"] for run in reversed(tagged)]
    assert all(run["tags"] == [tag, "echo"] for run in listed["runs"])
    paged = api.get("/v1/runs", params={"tag": tag, "limit": 2}).json()
    rest = api.get("/v1/runs", params={"tag": tag, "limit": 2, "cursor": paged["next_cursor"]}).json()
    assert len(paged["runs"]) == 2 and [run["run_id"] for run in rest["runs"]] == [tagged[0]["run_id"]]
    # a cursor of one tag's list is refused for another's
    other = api.get("/v1/runs", params={"tag": "other", "cursor": paged["next_cursor"]})
    assert other.status_code == 422


@pytest.mark.parametrize(
    ("change", "location"),
    [
        ({"delay": -1}, "body.delay"),
        ({"delay": "soon"}, "body.delay"),
        ({"delay": 31 * 86_400}, "body.delay"),
        ({"ttl": 0}, "body.ttl"),
        ({"delay": 10, "ttl": 5}, "body.ttl"),
        ({"delay": 5, "run_at": "2030-01-01T00:00:00Z"}, "body.run_at"),
        ({"run_at": "2020-01-01T00:00:00Z"}, "body.run_at"),
        ({"run_at": "tomorrow"}, "body.run_at"),
        ({"run_at": "2099-01-01T00:00:00Z"}, "body.run_at"),
        ({"tags": [f"t{n}" for n in range(11)]}, "body.tags"),
        ({"tags": ["has space"]}, "body.tags.0"),
        ({"tags": ["x" * 65]}, "body.tags.0"),
        ({"tags": "one"}, "body.tags"),
    ],
)
def test_bad_run_controls_are_refused_at_their_location(
    api: httpx.Client, change: dict[str, Any], location: str
) -> None:
    answer = api.post("/v1/runs", json={"task_id": "examples/greet", "arguments": {"name": "Ada"}, **change})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert location in [error["location"] for error in answer.json()["errors"]]


def test_a_bad_tag_filter_is_refused(api: httpx.Client) -> None:
    answer = api.get("/v1/runs", params={"tag": "no spaces"})
    assert answer.status_code == 422 and answer.json()["errors"][0]["location"] == "query.tag"


def test_a_failing_run_is_retried_after_its_backoff_until_it_succeeds(api: httpx.Client, tmp_path: Path) -> None:
    # Given a task that fails its first two attempts and is retried up to three times
    marks = tmp_path / "attempts"
    run = started(api, {"task_id": "control/flaky", "arguments": {"marks": str(marks), "failures": 2}})
    # When it has ended
    ended = waited(api, run["run_id"])
    # Then it succeeded at its third attempt, each earlier attempt shown with its error and times
    assert ended["status"] == "succeeded" and ended["result"] == 3 and ended["attempt"] == 3
    assert marks_in(marks) == 3
    first, second = ended["attempts"]
    assert [first["attempt"], second["attempt"]] == [1, 2]
    assert first["status"] == "failed" and first["error"]["exception_type"] == "ConnectionError"
    assert first["error"]["message"] == "attempt 1 could not connect"
    # the backoff: 0.5 s after the first failure, 1 s after the second
    assert seconds_between(first["ended_at"], second["started_at"]) >= 0.5
    assert seconds_between(second["ended_at"], ended["ended_at"]) >= 1.0
    # and each attempt's logs are kept apart
    logs = api.get(f"/v1/runs/{run['run_id']}/logs").json()["text"]
    assert logs.index("--- attempt 1 ---\nattempt 1") < logs.index("--- attempt 2 ---\nattempt 2")
    assert logs.index("--- attempt 2 ---") < logs.index("--- attempt 3 ---\nattempt 3")
    # and the compatible endpoint's waits see the final outcome too
    compat = api.post(
        "/api/v0/tools/tasks/run",
        json={"task_id": "control/flaky", "arguments": {"marks": str(tmp_path / "compat"), "failures": 1}},
    ).json()
    assert compat["success"] is True and compat["result"] == 2


def test_a_run_out_of_retries_fails_with_its_last_error(api: httpx.Client, tmp_path: Path) -> None:
    marks = tmp_path / "attempts"
    run = started(api, {"task_id": "control/flaky", "arguments": {"marks": str(marks), "failures": 9}})
    ended = waited(api, run["run_id"])
    assert ended["status"] == "failed" and ended["attempt"] == 4 and len(ended["attempts"]) == 3
    assert ended["error"]["message"] == "attempt 4 could not connect" and marks_in(marks) == 4


def test_a_timed_out_attempt_is_retried(api: httpx.Client, tmp_path: Path) -> None:
    marks = tmp_path / "attempts"
    body = {"task_id": "control/flaky", "arguments": {"marks": str(marks), "failures": 1, "hang": True}}
    ended = waited(api, started(api, body)["run_id"])
    assert ended["status"] == "succeeded" and ended["result"] == 2
    assert ended["attempts"][0]["status"] == "timed_out" and ended["attempts"][0]["error"]["type"] == "timeout"


def test_an_exception_marked_final_and_a_bad_result_are_not_retried(api: httpx.Client, tmp_path: Path) -> None:
    marks = tmp_path / "attempts"
    ended = waited(api, started(api, {"task_id": "control/declined", "arguments": {"marks": str(marks)}})["run_id"])
    assert ended["status"] == "failed" and ended["error"]["exception_type"] == "Declined"
    assert ended["attempt"] == 1 and ended["attempts"] == [] and marks_in(marks) == 1
    # a result the run's json_schema refuses is a validation_error: never retried
    body = {"task_id": "control/flaky", "arguments": {"marks": str(tmp_path / "v"), "failures": 0}}
    invalid = waited(api, started(api, {**body, "json_schema": {"type": "string"}})["run_id"])
    assert invalid["error"]["type"] == "validation_error" and invalid["attempt"] == 1


def test_a_cancel_during_the_backoff_ends_the_run_and_no_attempt_follows(api: httpx.Client, tmp_path: Path) -> None:
    # Given a run whose first attempt failed and which waits 6 s before its second
    marks = tmp_path / "attempts"
    run = started(api, {"task_id": "control/patient", "arguments": {"marks": str(marks)}})
    queued = until(lambda: (found := api.get(f"/v1/runs/{run['run_id']}").json())["status"] == "queued" and found)
    assert queued and queued["attempt"] == 2 and queued["next_attempt_at"] is not None
    # When it is cancelled during the wait
    cancelled = api.post(f"/v1/runs/{run['run_id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    # Then no second attempt is made, even once its time has passed
    time.sleep(max(0.0, (datetime.fromisoformat(queued["next_attempt_at"]) - datetime.now(UTC)).total_seconds()) + 2)
    assert marks_in(marks) == 1
    assert api.get(f"/v1/runs/{run['run_id']}").json()["status"] == "cancelled"


def test_a_rerun_runs_the_same_task_and_arguments_linked_both_ways(api: httpx.Client) -> None:
    # Given a run that ended, with tags
    first = api.post(
        "/v1/runs?wait=true",
        json={"task_id": "examples/weighted", "arguments": {}, "revision": "2", "tags": ["nightly"]},
    ).json()
    assert first["status"] == "succeeded"
    # When it is re-run
    answer = api.post(f"/v1/runs/{first['run_id']}/rerun", params={"wait": "true"})
    # Then a new run of the same task, revision, arguments and tags ends, naming the first
    assert answer.status_code == 201 and answer.headers["Location"].startswith("/v1/runs/run_")
    again = answer.json()
    assert again["run_id"] != first["run_id"] and again["rerun_of"] == first["run_id"]
    assert (again["task_id"], again["revision"]) == ("examples/weighted", "2")
    assert again["arguments"] == first["arguments"]
    assert again["tags"] == ["nightly"] and again["status"] == "succeeded"
    # and the first lists its re-runs
    assert api.get(f"/v1/runs/{first['run_id']}").json()["reruns"] == [again["run_id"]]
    # With "current", the revision is chosen by the weights (80/20 here): both come up
    revisions = {
        api.post(f"/v1/runs/{first['run_id']}/rerun", json={"revision": "current"}).json()["revision"]
        for _ in range(30)
    }
    assert revisions == {"1", "2"}


def test_a_rerun_is_refused_for_unknown_runs_and_bad_bodies(api: httpx.Client) -> None:
    assert api.post("/v1/runs/run_00000000000000000000000000/rerun").status_code == 404
    assert api.post("/v1/runs/not-a-run/rerun").status_code == 404
    run = started(api, {"task_id": "examples/echo", "arguments": {"message": "x"}})
    bad = api.post(f"/v1/runs/{run['run_id']}/rerun", json={"revision": "9"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["location"] == "body.revision"
    for wrong in ({"revision": 2}, {"nope": 1}, [1]):
        answer = api.post(f"/v1/runs/{run['run_id']}/rerun", json=wrong)
        assert answer.status_code == 422, (wrong, answer.text)


def test_a_batch_answers_each_request_in_order_without_failing_the_others(api: httpx.Client) -> None:
    requests = [
        {"task_id": "examples/greet", "arguments": {"name": "Ada"}},
        {"task_id": "examples/greet", "arguments": {"name": 5}},
        {"task_id": "no/such-task"},
        {"task_id": "examples/greet", "arguments": {"name": "Bo"}, "delay": 30, "tags": ["b"]},
        {"task_id": "examples/greet", "wait": True},
    ]
    answer = api.post("/v1/runs/batch", json={"runs": requests})
    assert answer.status_code == 200, answer.text
    items = answer.json()["runs"]
    assert [item["status"] for item in items] == [201, 422, 404, 201, 422]
    assert items[0]["run"]["arguments"]["name"] == "Ada"
    assert items[1]["problem"]["errors"][0]["location"] == "body.runs.1.arguments.name"
    assert items[2]["problem"]["title"] == "Task not found"
    assert items[3]["run"]["status"] == "queued"
    assert items[4]["problem"]["errors"][0]["location"] == "body.runs.4.wait"
    assert waited(api, items[0]["run"]["run_id"])["status"] == "succeeded"
    api.post(f"/v1/runs/{items[3]['run']['run_id']}/cancel")


def test_a_batch_under_one_idempotency_key_starts_its_runs_once(api: httpx.Client) -> None:
    key = uuid.uuid4().hex
    batch = {"runs": [{"task_id": "examples/echo", "arguments": {"message": str(n)}} for n in range(3)]}
    first = api.post("/v1/runs/batch", json=batch, headers={"Idempotency-Key": key}).json()["runs"]
    again = api.post("/v1/runs/batch", json=batch, headers={"Idempotency-Key": key}).json()["runs"]
    assert [item["status"] for item in first] == [201, 201, 201]
    assert [item["status"] for item in again] == [200, 200, 200]
    assert [item["run"]["run_id"] for item in again] == [item["run"]["run_id"] for item in first]
    other = api.post("/v1/runs/batch", json={"runs": batch["runs"][:2]}, headers={"Idempotency-Key": key})
    assert other.status_code == 409 and other.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "body",
    [
        {"runs": []},
        {"runs": [{"task_id": "examples/echo"}] * 101},
        {"runs": "x"},
        {"runs": ["not an object"]},
        {},
        {"runs": [{"task_id": "examples/echo"}], "extra": 1},
    ],
)
def test_a_malformed_batch_is_refused_whole(api: httpx.Client, body: dict[str, Any]) -> None:
    answer = api.post("/v1/runs/batch", json=body)
    assert answer.status_code == 422 and answer.json()["errors"][0]["location"].startswith("body")
