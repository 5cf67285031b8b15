"""A script's result is checked when it returns: against its declared return type, and
against what JSON can hold; a result that breaks either fails the run with a
validation_error naming the path."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskrun.local.sandbox import FunctionError
from taskrun.local.stack import LocalStack


def run(api: httpx.Client, task_id: str, **arguments: Any) -> dict[str, Any]:
    answer = api.post("/v1/runs", json={"task_id": task_id, "arguments": arguments, "wait": True})
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    assert body["status"] in ("succeeded", "failed"), body
    return body


def test_a_result_of_another_type_than_declared_fails_the_run(api: httpx.Client) -> None:
    failed = run(api, "results/mistyped")
    assert failed["status"] == "failed" and failed["result"] is None
    assert failed["error"]["type"] == "validation_error"
    assert failed["error"]["message"].startswith("result: input should be a valid integer")


def test_the_path_inside_a_declared_model_is_named(api: httpx.Client) -> None:
    assert run(api, "results/invoice")["result"] == {"lines": [{"sku": "a", "price": 1.5}, {"sku": "b", "price": 2.0}]}
    failed = run(api, "results/invoice", broken=True)
    assert failed["error"]["type"] == "validation_error"
    assert failed["error"]["message"].startswith("result.lines.1.price: input should be a valid number")


@pytest.mark.parametrize(
    ("kind", "starts"),
    [
        ("object", "result.thing: a object is not JSON"),
        ("nan", "result.values.1: nan is not a JSON number"),
        ("infinity", "result: inf is not a JSON number"),
        ("cycle", "result.1.back: it contains itself"),
        ("deep", "result." + ".".join(["down"] * 64) + ": nested deeper than 64 levels"),
        ("int-keys", "result: key 1 is not a string"),
    ],
)
def test_what_json_cannot_hold_fails_the_run_naming_where(api: httpx.Client, kind: str, starts: str) -> None:
    failed = run(api, "results/untyped", kind=kind)
    assert failed["status"] == "failed" and failed["error"]["type"] == "validation_error", failed
    assert failed["error"]["message"].startswith(starts), failed["error"]["message"]
    assert "0x" not in failed["error"]["message"]  # no memory addresses


def test_a_task_without_a_return_type_keeps_any_json_value(api: httpx.Client) -> None:
    succeeded = run(api, "results/untyped")
    assert succeeded["status"] == "succeeded"
    assert succeeded["result"] == {"pair": [1, 2], "text": "ok", "none": None}


def test_the_compatible_endpoint_reports_a_mistyped_result_as_a_validation_error(api: httpx.Client) -> None:
    answer = api.post("/api/v0/tools/tasks/run", json={"task_id": "results/mistyped", "arguments": {}})
    assert answer.status_code == 200
    body = answer.json()
    assert body["success"] is False and body["error_type"] == "validation_error"


INVOICE_SCHEMA = {
    "type": "object",
    "required": ["lines"],
    "properties": {
        "lines": {
            "type": "array",
            "items": {"type": "object", "properties": {"price": {"type": "number", "maximum": 1.9}}},
        }
    },
}


def test_a_result_that_meets_the_runs_json_schema_succeeds_one_that_breaks_it_fails(api: httpx.Client) -> None:
    met = api.post(
        "/v1/runs",
        json={"task_id": "team/add", "arguments": {"a": 2}, "json_schema": {"type": "integer"}, "wait": True},
    ).json()
    assert met["status"] == "succeeded" and met["result"] == 2
    assert met["json_schema"] == {"type": "integer"}

    broken = api.post(
        "/v1/runs", json={"task_id": "results/invoice", "json_schema": INVOICE_SCHEMA, "wait": True}
    ).json()
    assert broken["status"] == "failed" and broken["result"] is None
    assert broken["error"]["type"] == "validation_error"
    assert broken["error"]["message"].startswith("result.lines.1.price: 2.0 is greater than the maximum of 1.9")


def test_a_flows_output_is_held_to_the_runs_json_schema(api: httpx.Client) -> None:
    schema = {"type": "object", "required": ["never_there"]}
    body = {"task_id": "examples/batch", "arguments": {"numbers": [1, 2]}, "json_schema": schema, "wait": True}
    run = api.post("/v1/runs", json=body).json()
    deadline_run = api.get(f"/v1/runs/{run['run_id']}", params={"wait": "true", "wait_timeout": 20}).json()
    assert deadline_run["status"] == "failed", deadline_run
    assert deadline_run["error"]["type"] == "validation_error"
    assert "'never_there' is a required property" in deadline_run["error"]["message"]


def test_the_compatible_endpoint_takes_a_json_schema(api: httpx.Client) -> None:
    body = {"task_id": "team/add", "arguments": {"a": 2}, "json_schema": {"type": "string"}}
    answer = api.post("/api/v0/tools/tasks/run", json=body).json()
    assert answer["success"] is False and answer["error_type"] == "validation_error"
    assert "2 is not of type 'string'" in answer["error"]


@pytest.mark.parametrize(
    ("schema", "location"),
    [
        ({"type": "integr"}, "body.json_schema.type"),
        ({"properties": {"a": {"minimum": "zero"}}}, "body.json_schema.properties.a.minimum"),
        ({"required": "a"}, "body.json_schema.required"),
        ({"description": "x" * 70_000}, "body.json_schema"),
    ],
)
def test_an_invalid_json_schema_is_refused_at_its_location(
    api: httpx.Client, schema: dict[str, Any], location: str
) -> None:
    answer = api.post("/v1/runs", json={"task_id": "team/add", "arguments": {"a": 1}, "json_schema": schema})
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["location"] == location
    compat = api.post("/api/v0/tools/tasks/run", json={"task_id": "team/add", "json_schema": schema})
    assert compat.status_code == 422


def test_a_json_schema_that_is_not_an_object_or_refers_elsewhere(api: httpx.Client) -> None:
    not_object = api.post("/v1/runs", json={"task_id": "team/add", "json_schema": ["type"]})
    assert not_object.status_code == 422 and not_object.json()["errors"][0]["location"] == "body.json_schema"
    remote = {"$ref": "https://schemas.example.org/never-fetched.json"}
    run = api.post(
        "/v1/runs", json={"task_id": "team/add", "arguments": {"a": 1}, "json_schema": remote, "wait": True}
    ).json()
    assert run["status"] == "failed" and run["error"]["type"] == "validation_error"
    assert "could not be applied" in run["error"]["message"]


MIB = 1024 * 1024


def test_a_result_too_large_for_the_record_comes_back_whole_through_its_result_url(api: httpx.Client) -> None:
    run = api.post("/v1/runs", json={"task_id": "team/blob", "arguments": {"size": MIB}, "wait": True}).json()
    assert run["status"] == "succeeded", run
    assert run["result"] is None and run["result_url"]
    fetched = httpx.get(run["result_url"], timeout=30)
    assert fetched.status_code == 200
    assert fetched.json() == "x" * MIB

    # each read signs a fresh link (Signature Version 4, an hour long)
    again = api.get(f"/v1/runs/{run['run_id']}").json()
    assert again["result"] is None
    query = dict(httpx.URL(again["result_url"]).params)
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and query["X-Amz-Expires"] == "3600"
    assert "X-Amz-Signature" in query
    assert httpx.get(again["result_url"], timeout=30).json() == "x" * MIB


def test_the_compatible_endpoint_hands_a_large_result_back_whole(api: httpx.Client) -> None:
    answer = api.post("/api/v0/tools/tasks/run", json={"task_id": "team/blob", "arguments": {"size": MIB}})
    assert answer.status_code == 200
    body = answer.json()
    assert body["success"] is True and body["result"] == "x" * MIB


def test_a_large_result_is_listed_with_no_link_and_held_to_a_json_schema(api: httpx.Client) -> None:
    schema = {"type": "string", "maxLength": 10}
    run = api.post(
        "/v1/runs",
        json={"task_id": "team/blob", "arguments": {"size": 300_000}, "json_schema": schema, "wait": True},
    ).json()
    assert run["status"] == "failed" and run["error"]["type"] == "validation_error"
    assert run["result_url"] is None


def test_a_state_machine_waiting_on_a_large_result_gets_a_clear_error(stack: LocalStack) -> None:
    event = {"task_id": "team/blob", "arguments": {"size": 300_000}, "execution": "arn:aws:states:x:1:execution:m:e"}
    with pytest.raises(FunctionError) as raised:
        stack.emulator.runtime.invoke("RunTaskFunction", event)
    assert raised.value.payload["errorType"] == "ResultTooLarge"
    assert "result_url" in str(raised.value)


def start_cached(api: httpx.Client, arguments: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body = {"task_id": "results/cached", "arguments": arguments, "wait": True, **fields}
    answer = api.post("/v1/runs", json=body)
    assert answer.status_code == 201, answer.text
    run: dict[str, Any] = answer.json()
    assert run["status"] == "succeeded", run
    return run


def test_an_identical_run_of_a_cached_task_answers_with_the_earlier_result(api: httpx.Client, tmp_path: Path) -> None:
    arguments = {"word": "apple", "marks": str(tmp_path)}
    first = start_cached(api, arguments)
    assert first["cached"] is False and first["cached_from"] is None

    second = start_cached(api, arguments)
    assert second["run_id"] != first["run_id"]
    assert second["cached"] is True and second["cached_from"] == first["run_id"]
    assert second["result"] == first["result"] and second["duration_ms"] == 0
    assert len(list(tmp_path.glob("apple.*"))) == 1  # the task ran once

    # a cached answer is a run of its own: recorded and listed
    assert api.get(f"/v1/runs/{second['run_id']}").json()["cached_from"] == first["run_id"]
    listed = api.get("/v1/runs", params={"task_id": "results/cached", "limit": 10}).json()["runs"]
    [shown] = [run for run in listed if run["run_id"] == second["run_id"]]
    assert shown["cached"] is True and shown["cached_from"] == first["run_id"]  # as GET shows it

    # other arguments are another entry; "cache": false runs afresh
    other = start_cached(api, {"word": "pear", "marks": str(tmp_path)})
    assert other["cached"] is False
    fresh = start_cached(api, arguments, cache=False)
    assert fresh["cached"] is False and fresh["result"] != first["result"]
    assert len(list(tmp_path.glob("apple.*"))) == 2

    # the newest success is what the cache answers with from now on
    third = start_cached(api, arguments)
    assert third["cached_from"] == fresh["run_id"]


def test_a_cached_result_expires_with_its_ttl(api: httpx.Client) -> None:
    def start(word: str) -> dict[str, Any]:
        body = {"task_id": "results/cached_briefly", "arguments": {"word": word}, "wait": True}
        run: dict[str, Any] = api.post("/v1/runs", json=body).json()
        return run

    first = start("plum")
    time.sleep(1.2)
    later = start("plum")
    assert later["cached"] is False and later["result"] != first["result"]


def test_only_succeeded_runs_are_reused_and_the_catalog_shows_the_ttl(api: httpx.Client) -> None:
    failed = api.post("/v1/runs", json={"task_id": "results/cached", "arguments": {"word": "x"}, "wait": True})
    assert failed.status_code == 422  # no marks: refused before it runs, nothing cached
    assert api.get("/v1/tasks/results/cached").json()["cache_ttl"] == 60
    assert api.get("/v1/tasks/team/add").json()["cache_ttl"] is None
