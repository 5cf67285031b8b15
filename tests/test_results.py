"""A script's result is checked when it returns: against its declared return type, and
against what JSON can hold; a result that breaks either fails the run with a
validation_error naming the path."""

from __future__ import annotations

from typing import Any

import httpx
import pytest


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
