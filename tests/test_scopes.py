"""Scopes and task patterns: every route checks the scope it needs, and a key limited to
some tasks runs, sees and lists only those tasks' runs and schedules; another task's run
answers 404, never its data."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from taskrun.access.keys import DynamoKeyStore, new_key
from taskrun.access.scopes import ROUTE_SCOPES
from taskrun.local.stack import LocalStack
from taskrun.local.template import Stack
from taskrun.settings import get_settings
from tests.conftest import ROOT

SCOPES = ["runs:write", "runs:read", "schedules:write", "schedules:read", "admin"]


def make_key(api: httpx.Client, scopes: list[str], tasks: list[str] | None = None) -> dict[str, str]:
    made = api.post("/v1/keys", json={"name": "scoped", "scopes": scopes, "tasks": tasks or []})
    assert made.status_code == 201, made.text
    return {"X-API-KEY": made.json()["key"]}


def concrete(path: str) -> str:
    """A route's path with made-up ids in its parameters."""
    return re.sub(r"\{[a-z_]+\+?\}", "x_0123456789abcdef", path).replace(
        "/v1/tasks/x_0123456789abcdef", "/v1/tasks/a/b"
    )


def test_the_table_covers_every_secured_route() -> None:
    secured = {
        (route.method, route.path) for route in Stack(ROOT / "template.yaml", "us-east-1").routes() if route.authorized
    }
    assert secured == set(ROUTE_SCOPES)


@pytest.mark.parametrize("scope", SCOPES)
def test_every_route_refuses_a_key_without_its_scope(scope: str, api: httpx.Client, anonymous: httpx.Client) -> None:
    # Given a key with every scope but one, and a key with that one alone
    without = make_key(api, [other for other in SCOPES if other != scope])
    only = make_key(api, [scope])
    for (method, path), needed in ROUTE_SCOPES.items():
        url = concrete(path)
        body: dict[str, object] | None = {} if method in ("POST", "PATCH") else None
        if (method, path) == ("POST", "/v1/keys"):
            body = {"scopes": ["admin"]}  # a key gives no more than it has: within the admin-only key's own
        # When each route is called with either key
        refused = anonymous.request(method, url, headers=without, json=body)
        allowed = anonymous.request(method, url, headers=only, json=body)
        # Then the route needing the scope refuses the first with a 403 problem naming it,
        # whatever its body, and lets the second through
        if needed == scope:
            assert refused.status_code == 403, (method, path, refused.text)
            assert refused.headers["content-type"] == "application/problem+json"
            has = " ".join(other for other in SCOPES if other != scope)
            assert refused.json()["detail"] == (
                f"this route ({method} {path}) needs a key with the '{scope}' scope; this key's scopes: {has}"
            ), refused.text
            assert allowed.status_code not in (401, 403), (method, path, allowed.text)
        else:
            assert allowed.status_code == 403, (method, path, allowed.text)
            assert refused.status_code != 403, (method, path, refused.text)


def test_an_admin_only_key_cannot_start_or_read_runs(api: httpx.Client, anonymous: httpx.Client) -> None:
    admin = make_key(api, ["admin"])
    started = anonymous.post("/v1/runs", headers=admin, json={"task_id": "examples/greet", "arguments": {"name": "x"}})
    assert started.status_code == 403
    assert anonymous.get("/v1/runs", headers=admin).status_code == 403
    assert anonymous.get("/v1/keys", headers=admin).status_code == 200


def test_a_key_limited_to_reports_neither_runs_nor_reads_examples(api: httpx.Client, anonymous: httpx.Client) -> None:
    # Given a run of examples/greet, a schedule of it, and a key limited to reports/*
    other = api.post("/v1/runs", json={"task_id": "examples/greet", "arguments": {"name": "x"}, "wait": True}).json()
    schedule = api.post(
        "/v1/schedules", json={"task_id": "examples/greet", "arguments": {"name": "x"}, "expression": "rate(1 day)"}
    ).json()
    reports = make_key(api, ["runs:write", "runs:read", "schedules:write", "schedules:read"], ["reports/*"])

    # When it runs a report, it gets the run and sees it
    mine = anonymous.post("/v1/runs", headers=reports, json={"task_id": "reports/daily", "wait": True})
    assert mine.status_code == 201, mine.text
    assert mine.json()["result"] == {"report": "the report of today"}
    assert anonymous.get(f"/v1/runs/{mine.json()['run_id']}", headers=reports).status_code == 200

    # But examples/greet is not found to it: not run, not in the catalog
    refused = anonymous.post(
        "/v1/runs", headers=reports, json={"task_id": "examples/greet", "arguments": {"name": "x"}}
    )
    assert refused.status_code == 404 and "examples/greet" in refused.json()["detail"]
    compat = anonymous.post(
        "/api/v0/tools/tasks/run", headers=reports, json={"task_id": "examples/greet", "arguments": {"name": "x"}}
    ).json()
    assert (compat["success"], compat["error_type"]) == (False, "not_found")
    assert anonymous.get("/v1/tasks/examples/greet", headers=reports).status_code == 404
    listed_tasks = [task["task_id"] for task in anonymous.get("/v1/tasks", headers=reports).json()["tasks"]]
    assert listed_tasks == ["reports/daily"]

    # and its run answers 404 on every route, with none of its data
    run_id = other["run_id"]
    for method, path in [
        ("GET", f"/v1/runs/{run_id}"),
        ("GET", f"/v1/runs/{run_id}?wait=true&wait_timeout=1"),
        ("POST", f"/v1/runs/{run_id}/cancel"),
        ("GET", f"/v1/runs/{run_id}/history"),
        ("GET", f"/v1/runs/{run_id}/logs"),
        ("GET", f"/v1/runs/{run_id}/callbacks"),
        ("POST", f"/v1/runs/{run_id}/callbacks/cb_0123456789abcdef0123"),
        ("GET", f"/v1/runs/{run_id}/deliveries"),
        ("POST", f"/v1/runs/{run_id}/deliveries/d_0/retry"),
    ]:
        answer = anonymous.request(method, path, headers=reports, json={"output": 1} if method == "POST" else None)
        assert answer.status_code == 404, (method, path, answer.text)
        assert "hello" not in answer.text
    # lists leave it out, even filtered by its task
    listed = anonymous.get("/v1/runs", headers=reports, params={"limit": 100}).json()["runs"]
    assert listed and {run["task_id"] for run in listed} == {"reports/daily"}
    assert anonymous.get("/v1/runs", headers=reports, params={"task_id": "examples/greet"}).json()["runs"] == []

    # and the schedule of examples/greet is not found either: not read, changed, run or deleted
    schedule_id = schedule["schedule_id"]
    for method, body in [("GET", None), ("PATCH", {"enabled": False}), ("DELETE", None)]:
        answer = anonymous.request(method, f"/v1/schedules/{schedule_id}", headers=reports, json=body)
        assert answer.status_code == 404, (method, answer.text)
    assert anonymous.post(f"/v1/schedules/{schedule_id}/execute", headers=reports, json={}).status_code == 404
    shown = anonymous.get("/v1/schedules", headers=reports, params={"limit": 100}).json()["schedules"]
    assert schedule_id not in [item["schedule_id"] for item in shown]
    made = anonymous.post(
        "/v1/schedules",
        headers=reports,
        json={"task_id": "examples/greet", "arguments": {"name": "x"}, "expression": "rate(1 day)"},
    )
    assert made.status_code == 404 and "examples/greet" in made.json()["detail"]
    moved = anonymous.post(
        "/v1/schedules", headers=reports, json={"task_id": "reports/daily", "expression": "rate(1 day)"}
    ).json()
    retargeted = anonymous.patch(
        f"/v1/schedules/{moved['schedule_id']}", headers=reports, json={"task_id": "examples/greet"}
    )
    assert retargeted.status_code == 422
    # while the stack's own key still sees everything
    assert api.get(f"/v1/schedules/{schedule_id}").status_code == 200
    assert api.delete(f"/v1/schedules/{schedule_id}").status_code == 204
    assert api.delete(f"/v1/schedules/{moved['schedule_id']}").status_code == 204


def test_a_key_of_an_earlier_version_keeps_what_it_could_do(api: httpx.Client, anonymous: httpx.Client) -> None:
    # Given a key stored with the scopes of before ("runs" alone)
    secret, record = new_key(name="old", scopes=["runs"])
    assert record.scopes == ["runs:write", "runs:read", "schedules:write", "schedules:read"]
    store = DynamoKeyStore(get_settings().keys_table)
    store.table.put_item(Item={**record.model_dump(mode="json"), "scopes": ["runs"]})
    old = {"X-API-KEY": secret}
    # Then it runs and schedules, but does not manage keys
    assert anonymous.get("/v1/runs", headers=old).status_code == 200
    assert anonymous.get("/v1/schedules", headers=old).status_code == 200
    assert anonymous.get("/v1/keys", headers=old).status_code == 403
    shown = [key for key in api.get("/v1/keys").json()["keys"] if key["key_id"] == record.key_id]
    assert shown[0]["scopes"] == ["runs:write", "runs:read", "schedules:write", "schedules:read"]


def test_keys_are_recognisable_and_a_forged_one_is_refused(api: httpx.Client, anonymous: httpx.Client) -> None:
    key = api.post("/v1/keys", json={"name": "shape"}).json()["key"]
    # a prefix secret scanners match, 30 random characters and a 6-character checksum
    assert re.fullmatch(r"trk_[0-9A-Za-z]{36}", key)
    forged = key[:-1] + ("A" if key[-1] != "A" else "B")
    assert anonymous.get("/v1/tasks", headers={"X-API-KEY": forged}).status_code == 401
    assert anonymous.get("/v1/tasks", headers={"X-API-KEY": key}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"tasks": ["reports/**"]},
        {"tasks": ["re*ports"]},
        {"tasks": [""]},
        {"tasks": ["a b"]},
        {"tasks": ["x"] * 51},
        {"scopes": ["runs"]},
        {"scopes": ["root"]},
        {"tasks": "reports/*"},
    ],
)
def test_a_key_with_bad_scopes_or_patterns_is_refused(body: dict[str, object], api: httpx.Client) -> None:
    answer = api.post("/v1/keys", json=body)
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["location"].startswith("body.")


def test_a_flood_of_wrong_keys_restarts_nothing_and_valid_keys_go_on(
    stack: LocalStack, api: httpx.Client, anonymous: httpx.Client, request: pytest.FixtureRequest
) -> None:
    # Given the authorizer warm, and none of its sandboxes retired for being idle meanwhile
    # (the stack stops a sandbox unused for its idle time, which an earlier test's may near)
    runtime = stack.emulator.runtime
    kept_idle_seconds, runtime.idle_seconds = runtime.idle_seconds, 3600.0
    request.addfinalizer(lambda: setattr(runtime, "idle_seconds", kept_idle_seconds))
    assert api.get("/v1/tasks").status_code == 200
    authorizer = runtime.pool("AuthorizerFunction")
    before = set(authorizer.pids())

    # When 8 clients send 25 wrong keys each, while a valid key asks too
    def wrong(client_number: int) -> list[int]:
        return [
            anonymous.get("/v1/tasks", headers={"X-API-KEY": f"trk_wrong_{client_number}_{n}"}).status_code
            for n in range(25)
        ]

    with ThreadPoolExecutor(8) as clients:
        floods = [clients.submit(wrong, number) for number in range(8)]
        valid = [api.get("/v1/tasks").status_code for _ in range(10)]
        refused = [status for flood in floods for status in flood.result()]
    # Then every wrong key is refused and every valid request answered
    assert refused == [401] * 200 and valid == [200] * 10
    # and the sandboxes that answered the refusals are the same ones, not restarted:
    # a refusal is the authorizer's answer, not its crash
    assert before <= set(authorizer.pids())
