"""Stories of a client running scripts through the local stack over HTTP."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import COMPAT_WAIT_SECONDS


def start(api: httpx.Client, task_id: str, arguments: dict | None = None, **options: object) -> httpx.Response:
    return api.post("/v1/runs", json={"task_id": task_id, "arguments": arguments or {}, **options})


def test_a_run_with_wait_answers_201_with_the_result(api: httpx.Client) -> None:
    # Given the greeting task, when a client starts it and waits
    response = start(api, "examples/greet", {"name": "Ada", "times": 2}, wait=True)

    # Then the run comes back ended, with its result, and where to find it
    assert response.status_code == 201
    run = response.json()
    assert response.headers["Location"] == f"/v1/runs/{run['run_id']}"
    assert run["status"] == "succeeded"
    assert run["is_done"] is True and run["is_successful"] is True
    assert run["result"] == {"greeting": "hello Ada hello Ada!"}
    assert run["arguments"] == {"name": "Ada", "times": 2, "style": None}
    assert run["triggered_by"] == "api"
    assert run["revision"] == "1"
    assert run["started_at"] and run["ended_at"] and run["created_at"].endswith("Z")
    assert run["duration_ms"] >= 0


def test_a_nested_model_argument_is_validated_and_applied(api: httpx.Client) -> None:
    run = start(api, "examples/greet", {"name": "Bo", "style": {"uppercase": True}}, wait=True).json()
    assert run["result"] == {"greeting": "HELLO BO!"}

    bad = start(api, "examples/greet", {"name": "Bo", "style": {"punctuation": "!!!!"}})
    assert bad.status_code == 422
    assert [e["location"] for e in bad.json()["errors"]] == ["body.arguments.style.punctuation"]


def test_without_wait_the_run_is_pending_and_a_later_wait_sees_it_succeed(api: httpx.Client) -> None:
    response = start(api, "examples/greet", {"name": "Cy"})
    assert response.status_code == 201
    run = response.json()
    assert run["status"] == "pending" and run["is_done"] is False

    later = api.get(f"/v1/runs/{run['run_id']}", params={"wait": "true", "wait_timeout": 10})
    assert later.status_code == 200
    assert later.json()["status"] == "succeeded"
    assert later.json()["result"] == {"greeting": "hello Cy!"}


def test_a_wait_timeout_returns_the_run_as_it_stands_and_the_run_goes_on(api: httpx.Client) -> None:
    # Given a task that sleeps longer than the caller waits
    began = time.monotonic()
    response = api.post(
        "/v1/runs",
        params={"wait": "true", "wait_timeout": "0.5"},
        json={"task_id": "examples/sleep", "arguments": {"seconds": 2}},
    )
    # Then the caller gets the run back unfinished, after about its wait
    assert response.status_code == 201
    run = response.json()
    assert run["status"] in ("pending", "running")
    assert time.monotonic() - began < 2

    # And the run ends on its own later
    ended = api.get(f"/v1/runs/{run['run_id']}", params={"wait": "true", "wait_timeout": 10}).json()
    assert ended["status"] == "succeeded"
    assert ended["result"] == {"slept": 2.0}


def test_a_raising_task_ends_failed_with_the_exception(api: httpx.Client) -> None:
    response = start(api, "examples/fail", {"message": "disk on fire"}, wait=True)
    assert response.status_code == 201
    run = response.json()
    assert run["status"] == "failed"
    assert run["is_successful"] is False
    frames = run["error"].pop("frames")
    assert run["error"] == {"type": "execution_error", "message": "disk on fire", "exception_type": "TaskFailure"}
    assert frames[-1]["function"] == "fail" and frames[-1]["file"].endswith("tasks/examples.py")


def test_a_task_past_its_timeout_ends_timed_out(api: httpx.Client) -> None:
    run = start(api, "examples/slow_greet", {"name": "Di", "delay": 4}, wait=True, wait_timeout=10).json()
    assert run["status"] == "timed_out"
    assert run["error"]["type"] == "timeout"
    assert 1900 <= run["duration_ms"] < 4000


def test_usage_reported_through_the_run_context_is_kept(api: httpx.Client) -> None:
    run = start(api, "examples/summarize", {"text": "one two three"}, wait=True).json()
    assert run["result"] == {"words": 3}
    assert run["usage"] == {"input_tokens": 3, "output_tokens": 1}


def test_absent_null_and_empty_string_arguments_are_kept_apart(api: httpx.Client) -> None:
    # absent → the declared default; null → None; "" stays ""
    run = start(api, "examples/echo", {"message": None}, wait=True).json()
    assert run["result"] == {"message": None, "note": ""}
    run = start(api, "examples/echo", {"message": "", "note": "n"}, wait=True).json()
    assert run["result"] == {"message": "", "note": "n"}
    # null for a parameter that is not optional is refused
    refused = start(api, "examples/greet", {"name": None})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["location"] == "body.arguments.name"


def test_bad_arguments_answer_422_naming_each_location(api: httpx.Client) -> None:
    response = start(api, "examples/greet", {"times": "many", "colour": "red"})
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422 and problem["title"] and problem["detail"]
    assert {e["location"] for e in problem["errors"]} == {
        "body.arguments.name",
        "body.arguments.times",
        "body.arguments.colour",
    }
    assert next(e for e in problem["errors"] if e["location"] == "body.arguments.times")["value"] == "many"


def test_a_bad_request_body_is_a_problem_never_a_500(api: httpx.Client) -> None:
    malformed = api.post("/v1/runs", content=b'{"task_id": ', headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400
    assert malformed.headers["Content-Type"] == "application/problem+json"

    no_task = api.post("/v1/runs", json={"arguments": {}})
    assert no_task.status_code == 422
    assert no_task.json()["errors"][0]["location"] == "body.task_id"

    form = api.post("/v1/runs", content=b"task_id=x", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status_code == 415

    unknown_field = api.post("/v1/runs", json={"task_id": "examples/greet", "priority": 1})
    assert unknown_field.status_code == 422
    assert unknown_field.json()["errors"][0]["location"] == "body.priority"

    bad_wait = api.post("/v1/runs", params={"wait_timeout": "-1"}, json={"task_id": "examples/greet"})
    assert bad_wait.status_code == 422
    assert bad_wait.json()["errors"][0]["location"] == "query.wait_timeout"


def test_an_unknown_task_or_run_is_404(api: httpx.Client) -> None:
    response = start(api, "examples/nope")
    assert response.status_code == 404
    assert response.json()["title"] == "Task not found"
    assert api.get("/v1/runs/run_00000000000000000000000000").status_code == 404
    assert api.get("/v1/tasks/examples/nope").status_code == 404


def test_task_type_must_match_the_task(api: httpx.Client) -> None:
    response = start(api, "examples/greet", {"name": "x"}, task_type="flow")
    assert response.status_code == 422
    assert response.json()["errors"][0]["location"] == "body.task_type"


def test_cancel_ends_a_running_run_and_an_ended_run_cannot_be_cancelled(api: httpx.Client) -> None:
    run = start(api, "examples/sleep", {"seconds": 3}).json()

    cancelled = api.post(f"/v1/runs/{run['run_id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["error"]["type"] == "cancelled"

    # the worker finishing later does not undo the cancel
    time.sleep(3.5)
    assert api.get(f"/v1/runs/{run['run_id']}").json()["status"] == "cancelled"

    again = api.post(f"/v1/runs/{run['run_id']}/cancel")
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]


def test_runs_are_listed_newest_first_with_a_working_cursor(api: httpx.Client) -> None:
    ids = [start(api, "team/add", {"a": i}, wait=True).json()["run_id"] for i in range(5)]

    first = api.get("/v1/runs", params={"task_id": "team/add", "limit": 2}).json()
    second = api.get("/v1/runs", params={"task_id": "team/add", "limit": 2, "cursor": first["next_cursor"]}).json()

    assert [r["run_id"] for r in first["runs"]] == ids[::-1][:2]
    assert [r["run_id"] for r in second["runs"]] == ids[::-1][2:4]
    assert second["next_cursor"]

    everything = api.get("/v1/runs", params={"limit": 100}).json()["runs"]
    created = [r["created_at"] for r in everything]
    assert created == sorted(created, reverse=True)


def test_runs_can_be_filtered_by_status_and_trigger(api: httpx.Client) -> None:
    failed = start(api, "examples/fail", wait=True).json()
    listed = api.get("/v1/runs", params={"status": "failed", "triggered_by": "api", "limit": 100}).json()["runs"]
    assert failed["run_id"] in [r["run_id"] for r in listed]
    assert {r["status"] for r in listed} == {"failed"}

    by_task = api.get("/v1/runs", params={"task_id": "examples/fail", "status": "succeeded"}).json()
    assert by_task["runs"] == []

    assert api.get("/v1/runs", params={"status": "exploded"}).status_code == 422
    assert api.get("/v1/runs", params={"cursor": "not-a-cursor"}).status_code == 422
    assert api.get("/v1/runs", params={"limit": 0}).status_code == 422


def test_a_pinned_revision_is_used_and_unpinned_runs_follow_the_weights(api: httpx.Client) -> None:
    pinned = start(api, "examples/weighted", {"value": 3}, revision="2", wait=True).json()
    assert pinned["revision"] == "2"
    assert pinned["result"] == {"revision": "2", "value": 6}

    unknown = start(api, "examples/weighted", revision="9")
    assert unknown.status_code == 422
    assert unknown.json()["errors"][0]["location"] == "body.revision"

    revisions = [start(api, "examples/weighted").json()["revision"] for _ in range(40)]
    assert set(revisions) == {"1", "2"}
    assert revisions.count("1") > revisions.count("2")


def test_the_catalog_lists_tasks_with_their_schemas(api: httpx.Client) -> None:
    tasks = {t["task_id"]: t for t in api.get("/v1/tasks").json()["tasks"]}
    assert {"examples/greet", "examples/sleep", "team/add"} <= set(tasks)

    greet = api.get("/v1/tasks/examples/greet").json()
    assert greet["task_type"] == "script"
    assert greet["parameters"]["required"] == ["name"]
    assert greet["parameters"]["properties"]["times"]["default"] == 1
    assert greet["parameters"]["additionalProperties"] is False
    assert greet["output"]["type"] == "object"
    assert greet["timeout"] == 30
    assert greet["description"] == "Greet someone, one or more times."

    summarize = tasks["examples/summarize"]
    assert "context" not in summarize["parameters"]["properties"]
    assert [r["weight"] for r in tasks["examples/weighted"]["revisions"]] == [80, 20]


def test_every_route_but_health_needs_a_valid_key(anonymous: httpx.Client) -> None:
    assert anonymous.get("/v1/health").json() == {"status": "ok"}

    missing = anonymous.get("/v1/runs")
    assert missing.status_code == 401
    assert missing.headers["Content-Type"] == "application/problem+json"
    assert missing.json()["status"] == 401

    wrong = anonymous.get("/v1/tasks", headers={"X-API-KEY": "nope"})
    assert wrong.status_code == 401

    bearer = anonymous.get("/v1/tasks", headers={"Authorization": "Bearer test-key-0123456789"})
    assert bearer.status_code == 200


def test_the_compatible_endpoint_answers_each_outcome_in_its_shape(api: httpx.Client) -> None:
    def call(body: dict) -> dict:
        response = api.post("/api/v0/tools/tasks/run", json=body)
        assert response.status_code == 200
        return response.json()

    ok = call({"task_id": "examples/greet", "arguments": {"name": "Ed"}, "task_type": "script"})
    assert ok["success"] is True and ok["result"] == {"greeting": "hello Ed!"}
    assert ok["error"] is None and ok["error_type"] is None and ok["job_id"].startswith("run_")

    assert call({"task_id": "f/public/nope", "arguments": {}})["error_type"] == "not_found"

    invalid = call({"task_id": "examples/greet", "arguments": {"times": 2}})
    assert invalid["success"] is False and invalid["error_type"] == "validation_error"
    assert "body.arguments.name" in invalid["error"]

    # a body that is not the endpoint's request shape is a 422 problem, which its SDK raises on
    malformed = api.post("/api/v0/tools/tasks/run", json={"arguments": {}})
    assert malformed.status_code == 422
    assert malformed.headers["Content-Type"] == "application/problem+json"
    assert malformed.json()["errors"][0]["location"] == "body.task_id"

    failed = call({"task_id": "examples/fail", "arguments": {"message": "nope"}})
    assert failed == {
        "success": False,
        "error": "nope",
        "error_type": "execution_error",
        "job_id": failed["job_id"],
        "result": None,
    }

    slow = call({"task_id": "examples/sleep", "arguments": {"seconds": COMPAT_WAIT_SECONDS + 2}})
    assert slow["success"] is False and slow["error_type"] == "timeout"
    assert api.get(f"/v1/runs/{slow['job_id']}").json()["status"] == "running"

    timed_out = call({"task_id": "examples/slow_greet", "arguments": {"name": "x", "delay": 2.5}})
    assert timed_out["error_type"] == "timeout" and timed_out["job_id"]


def test_unknown_routes_answer_a_problem(api: httpx.Client) -> None:
    assert api.get("/v1/nothing-here").status_code == 404
    wrong_method = api.delete("/v1/runs")
    assert wrong_method.status_code == 405


def test_arguments_too_large_for_a_run_record_answer_413(api: httpx.Client) -> None:
    response = start(api, "examples/echo", {"message": "x" * 150_000})
    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/problem+json"
    assert "at most 100000" in response.json()["detail"]


def test_listed_runs_are_summaries_so_a_page_of_large_runs_stays_small(api: httpx.Client) -> None:
    # Given 25 runs whose results are near the largest kept (25 of 270 KB would pass Lambda's 6 MB)
    ids = [start(api, "team/blob", {"size": 270_000}, wait=True).json()["run_id"] for _ in range(25)]

    # When they are listed with the largest page size (the emulator weighs a query's 1 MB
    # against whole items, so a page may end early with a cursor; on AWS, against summaries)
    listed: list[dict[str, Any]] = []
    params: dict[str, Any] = {"task_id": "team/blob", "limit": 100}
    while True:
        response = api.get("/v1/runs", params=params)
        # Then every page answers small, its runs without arguments and result, which each run has
        assert response.status_code == 200 and len(response.content) < 100_000
        listed += response.json()["runs"]
        if response.json()["next_cursor"] is None:
            break
        params["cursor"] = response.json()["next_cursor"]
    assert set(ids) <= {run["run_id"] for run in listed}
    assert len({run["run_id"] for run in listed}) == len(listed)
    assert all("arguments" not in run and "result" not in run for run in listed)
    assert {run["status"] for run in listed if run["run_id"] in ids} == {"succeeded"}
    assert len(api.get(f"/v1/runs/{ids[0]}").json()["result"]) == 270_000


def test_a_task_past_its_function_s_memory_size_fails_and_the_next_run_goes_on(api: httpx.Client) -> None:
    # Given the worker's MemorySize of 1,024 MB: a run that asks for 2 GB at once fails
    hog = api.post("/v1/runs", json={"task_id": "team/hog", "arguments": {"megabytes": 2048}, "wait": True}).json()
    assert hog["status"] == "failed", hog
    assert hog["error"]["type"] == "execution_error" and hog["error"]["exception_type"] == "MemoryError"
    # while one within it succeeds
    fits = api.post("/v1/runs", json={"task_id": "team/hog", "arguments": {"megabytes": 64}, "wait": True}).json()
    assert (fits["status"], fits["result"]) == ("succeeded", 64 * 1024 * 1024)


def test_a_history_cursor_this_api_did_not_give_is_refused_for_a_script_run_too(api: httpx.Client) -> None:
    run = api.post("/v1/runs?wait=true", json={"task_id": "team/add", "arguments": {"a": 1}}).json()
    assert api.get(f"/v1/runs/{run['run_id']}/history").json() == {"steps": [], "next_cursor": None}
    refused = api.get(f"/v1/runs/{run['run_id']}/history", params={"cursor": "\u008d\n\u001a"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["location"] == "query.cursor"
