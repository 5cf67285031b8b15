"""Idempotency-Key on POST /v1/runs and the compatible endpoint: a retried request answers
the first one's run, another body with the key is 409, concurrent ones start one run."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx


def key() -> str:
    return f"retry-{uuid.uuid4()}"


def test_a_retried_start_answers_the_first_run_and_waits_as_asked(api: httpx.Client) -> None:
    headers = {"Idempotency-Key": key()}
    body = {"task_id": "examples/sleep", "arguments": {"seconds": 1}}

    first = api.post("/v1/runs", json=body, headers=headers)
    again = api.post("/v1/runs", json=body, headers=headers, params={"wait": "true"})

    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["run_id"] == first.json()["run_id"]
    assert again.json()["status"] == "succeeded"  # the retry waited for the first run to end
    assert again.headers["Location"] == f"/v1/runs/{first.json()['run_id']}"


def test_the_same_key_with_another_body_is_409_and_starts_nothing(api: httpx.Client) -> None:
    headers = {"Idempotency-Key": key()}
    first = api.post("/v1/runs", json={"task_id": "team/add", "arguments": {"a": 1}}, headers=headers)
    other = api.post("/v1/runs", json={"task_id": "team/add", "arguments": {"a": 2}}, headers=headers)

    assert first.status_code == 201
    assert other.status_code == 409
    assert other.headers["Content-Type"] == "application/problem+json"
    assert "Idempotency-Key" in other.json()["detail"]


def test_concurrent_requests_with_one_key_start_one_run(base_url: str, api: httpx.Client) -> None:
    marker = str(uuid.uuid4())
    headers = {"X-API-KEY": api.headers["X-API-KEY"], "Idempotency-Key": key()}
    body = {"task_id": "examples/echo", "arguments": {"message": marker}}

    def post(_: int) -> httpx.Response:
        return httpx.post(f"{base_url}/v1/runs", json=body, headers=headers, timeout=60)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(post, range(12)))

    assert sorted(a.status_code for a in answers) == [200] * 11 + [201]
    assert len({a.json()["run_id"] for a in answers}) == 1
    runs = api.get("/v1/runs", params={"task_id": "examples/echo", "limit": 100}).json()["runs"]
    started = [r for r in runs if api.get(f"/v1/runs/{r['run_id']}").json()["arguments"].get("message") == marker]
    assert len(started) == 1


def test_a_refused_request_does_not_use_up_its_key(api: httpx.Client) -> None:
    headers = {"Idempotency-Key": key()}
    refused = api.post("/v1/runs", json={"task_id": "team/add", "arguments": {"a": "x"}}, headers=headers)
    assert refused.status_code == 422
    fixed = api.post("/v1/runs", json={"task_id": "team/add", "arguments": {"a": 1}}, headers=headers)
    assert fixed.status_code == 201


def test_a_key_that_is_not_one_is_422(api: httpx.Client) -> None:
    body = {"task_id": "team/add", "arguments": {"a": 1}}
    for bad in (b"has space", b"k" * 256, "é".encode(), b""):
        response = api.post("/v1/runs", json=body, headers={b"Idempotency-Key": bad})
        assert response.status_code == 422, bad
        assert response.json()["errors"][0]["location"] == "header.Idempotency-Key"


def test_the_compatible_endpoint_answers_a_retry_with_the_first_job(api: httpx.Client) -> None:
    headers = {"Idempotency-Key": key()}
    body = {"task_id": "team/add", "arguments": {"a": 20, "b": 1}}
    first = api.post("/api/v0/tools/tasks/run", json=body, headers=headers).json()
    again = api.post("/api/v0/tools/tasks/run", json=body, headers=headers).json()
    assert first["success"] and first["result"] == 21
    assert again == first
    other = api.post("/api/v0/tools/tasks/run", json={**body, "arguments": {"a": 1}}, headers=headers)
    assert other.status_code == 409
