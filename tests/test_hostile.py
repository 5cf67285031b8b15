"""A corpus of hostile requests across every route: each answers a 4xx problem, never a 5xx
and never a hang, and none creates a run it then fails to report."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from tests.test_mcp import HOSTILE as MCP_HOSTILE

RUN = "run_01jd0m4x7c5q8n2v6b3k9w1t0e"
JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class Hostile:
    name: str
    method: str
    path: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    status: int | None = None  # the exact answer, where one is owed
    location: str | None = None  # the first error's location, where one applies


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def run_body(**fields: Any) -> bytes:
    return json.dumps({"task_id": "examples/echo", "arguments": {"message": "m"}, **fields}).encode()


START_BODIES: list[tuple[str, bytes, dict[str, str], int | None, str | None]] = [
    ("empty", b"", JSON, 422, "body"),
    ("null", b"null", JSON, 422, "body"),
    ("array", b"[]", JSON, 422, None),
    ("array-of-a-run", b'[{"task_id": "examples/echo", "arguments": {"message": "m"}}]', JSON, 422, None),
    ("string", b'"x"', JSON, 422, None),
    ("number", b"1", JSON, 422, None),
    ("truncated", b'{"task_id": ', JSON, 400, None),
    ("not-utf8", b'{"task_id": "\xff\xfe"}', JSON, 400, None),
    ("utf16", '{"task_id": "examples/echo"}'.encode("utf-16"), JSON, 400, None),
    ("json-as-text", run_body(), {"Content-Type": "text/plain"}, 415, None),
    ("json-as-octets", run_body(), {"Content-Type": "application/octet-stream"}, 415, None),
    ("json-as-xml", run_body(), {"Content-Type": "application/xml"}, 415, None),
    ("form", b"task_id=x", {"Content-Type": "application/x-www-form-urlencoded"}, 415, None),
    ("multipart-no-name", b"--b\r\n\r\n--b--", {"Content-Type": "multipart/form-data; boundary=b"}, 400, None),
    ("no-content-type", run_body(), {}, None, None),
    (
        "deep-300",
        b'{"task_id": "examples/echo", "arguments": {"message": ' + nested(300).encode() + b"}}",
        JSON,
        400,
        None,
    ),
    (
        "deep-5000",
        b'{"task_id": "examples/echo", "arguments": {"message": ' + nested(5000).encode() + b"}}",
        JSON,
        400,
        None,
    ),
    ("deep-100000", nested(100_000).encode(), JSON, 422, None),  # an array: refused before it is read
    ("deep-objects", b'{"a":' * 3000 + b"1" + b"}" * 3000, JSON, 400, None),
    ("lone-surrogate", b'{"task_id": "examples/echo", "arguments": {"message": "\\ud800"}}', JSON, 400, None),
    ("surrogate-key", b'{"task_id": "examples/echo", "arguments": {"\\udfff": "x"}}', JSON, 400, None),
    ("surrogate-task", b'{"task_id": "\\ud800"}', JSON, 400, None),
    ("nan", b'{"task_id": "examples/sleep", "arguments": {"seconds": NaN}}', JSON, 400, None),
    ("infinity", b'{"task_id": "examples/sleep", "arguments": {"seconds": Infinity}}', JSON, 400, None),
    (
        "huge-number",
        b'{"task_id": "examples/greet", "arguments": {"name": "x", "times": 1' + b"0" * 5000 + b"}}",
        JSON,
        400,
        None,
    ),
    ("nul-in-task", run_body(task_id="examples/\u0000echo"), JSON, 422, "body.task_id"),
    ("task-int", run_body(task_id=1), JSON, 422, "body.task_id"),
    ("task-null", run_body(task_id=None), JSON, 422, "body.task_id"),
    ("task-list", run_body(task_id=[]), JSON, 422, "body.task_id"),
    ("task-empty", run_body(task_id=""), JSON, 422, "body.task_id"),
    ("task-long", run_body(task_id="a" * 5000), JSON, 422, "body.task_id"),
    ("task-dots", run_body(task_id="../../etc/passwd"), JSON, 404, None),
    ("task-space", run_body(task_id="examples/ echo"), JSON, 422, "body.task_id"),
    ("arguments-list", run_body(arguments=[]), JSON, 422, "body.arguments"),
    ("arguments-string", run_body(arguments="x"), JSON, 422, "body.arguments"),
    ("arguments-null", run_body(arguments=None), JSON, 422, "body.arguments"),
    ("argument-wrong-type", run_body(task_id="examples/greet", arguments={"name": {}}), JSON, 422, None),
    ("task-type-bogus", run_body(task_type="lambda"), JSON, 422, "body.task_type"),
    ("task-type-int", run_body(task_type=1), JSON, 422, "body.task_type"),
    ("wait-string", run_body(wait="sometimes"), JSON, 422, "body.wait"),
    ("wait-timeout-negative", run_body(wait_timeout=-1), JSON, 422, "body.wait_timeout"),
    ("wait-timeout-huge", run_body(wait_timeout=1e300), JSON, 422, "body.wait_timeout"),
    ("wait-timeout-string", run_body(wait_timeout="soon"), JSON, 422, "body.wait_timeout"),
    ("revision-list", run_body(revision=[]), JSON, 422, "body.revision"),
    ("revision-unknown", run_body(revision="99"), JSON, 422, "body.revision"),
    ("webhook-long", run_body(webhook_url="https://x/" + "a" * 5000), JSON, 422, "body.webhook_url"),
    ("webhook-int", run_body(webhook_url=5), JSON, 422, "body.webhook_url"),
    ("extra-field", run_body(priority="high"), JSON, 422, "body.priority"),
    ("big-argument", run_body(arguments={"message": "x" * 3_000_000}), JSON, 413, None),
    ("duplicate-keys", b'{"task_id": "examples/echo", "task_id": 5}', JSON, 422, "body.task_id"),
]

QUERIES: list[tuple[str, str, dict[str, str], int | None, str | None]] = [
    ("list-empty-task", "/v1/runs", {"task_id": ""}, 422, "query.task_id"),
    ("list-bad-task", "/v1/runs", {"task_id": "a b"}, 422, "query.task_id"),
    ("list-long-task", "/v1/runs", {"task_id": "a" * 3000}, 422, "query.task_id"),
    ("list-status", "/v1/runs", {"status": "exploded"}, 422, "query.status"),
    ("list-trigger", "/v1/runs", {"triggered_by": "cron"}, 422, "query.triggered_by"),
    ("list-limit-zero", "/v1/runs", {"limit": "0"}, 422, "query.limit"),
    ("list-limit-negative", "/v1/runs", {"limit": "-5"}, 422, "query.limit"),
    ("list-limit-text", "/v1/runs", {"limit": "ten"}, 422, "query.limit"),
    ("list-limit-huge", "/v1/runs", {"limit": "1" + "0" * 40}, 422, "query.limit"),
    ("list-cursor-junk", "/v1/runs", {"cursor": "not-a-cursor"}, 422, "query.cursor"),
    ("list-cursor-unicode", "/v1/runs", {"cursor": "²"}, 422, "query.cursor"),
    ("list-cursor-nul", "/v1/runs", {"cursor": "\u0000"}, 422, "query.cursor"),
    ("list-cursor-long", "/v1/runs", {"cursor": "A" * 20_000}, 422, "query.cursor"),
    ("list-cursor-other-shape", "/v1/runs", {"cursor": "eyJydW5faWQiOiAxfQ"}, 422, "query.cursor"),
    ("list-cursor-tampered", "/v1/runs", {"cursor": "eyJydW5faWQiOiJ4Iiwia2luZCI6InJ1biJ9"}, 422, "query.cursor"),
    ("list-cursor-other-index", "/v1/runs", {"cursor": "eyJydW5faWQiOiJydW5fMCIsInN0YXR1cyI6MX0"}, 422, "query.cursor"),
    ("get-wait-text", f"/v1/runs/{RUN}", {"wait": "maybe"}, 422, "query.wait"),
    ("get-wait-timeout-negative", f"/v1/runs/{RUN}", {"wait_timeout": "-1"}, 422, "query.wait_timeout"),
    ("get-wait-timeout-text", f"/v1/runs/{RUN}", {"wait_timeout": "abc"}, 422, "query.wait_timeout"),
    ("get-wait-timeout-inf", f"/v1/runs/{RUN}", {"wait_timeout": "inf"}, 422, "query.wait_timeout"),
    ("get-wait-timeout-nan", f"/v1/runs/{RUN}", {"wait_timeout": "nan"}, 422, "query.wait_timeout"),
    ("history-cursor-unicode", f"/v1/runs/{RUN}/history", {"cursor": "²"}, None, None),
    ("history-cursor-negative", f"/v1/runs/{RUN}/history", {"cursor": "-1"}, None, None),
    ("history-cursor-huge", f"/v1/runs/{RUN}/history", {"cursor": "9" * 40}, None, None),
    ("history-limit-zero", f"/v1/runs/{RUN}/history", {"limit": "0"}, 422, "query.limit"),
    ("history-limit-text", f"/v1/runs/{RUN}/history", {"limit": "many"}, 422, "query.limit"),
    ("logs-junk-query", f"/v1/runs/{RUN}/logs", {"tail": "-1" * 500}, 404, None),
    ("health-junk-query", "/v1/health", {"x": "\u0000" * 10}, 200, None),
    ("openapi-junk-query", "/v1/openapi.json", {"format": "<script>" * 100}, 200, None),
    ("docs-junk-query", "/v1/docs", {"format": "oauth2-redirect", "x": "\u0000"}, 200, None),
    ("tasks-junk-query", "/v1/tasks", {"limit": "-1"}, None, None),
    ("console-junk-query", "/console", {"key": "<script>" * 100}, 200, None),
]

PATHS: list[tuple[str, str, str, int | None]] = [
    ("get-short-id", "GET", "/v1/runs/x", 404),
    ("get-upper-id", "GET", "/v1/runs/run_" + "A" * 26, 404),
    ("get-long-id", "GET", "/v1/runs/" + "a" * 5000, 404),
    ("console-asset-unknown", "GET", "/console/assets/app.py", 404),
    ("console-asset-traversal", "GET", "/console/assets/..%2F..%2Fapp.py", 404),
    ("console-asset-long", "GET", "/console/assets/" + "a" * 5000, 404),
    ("get-nul-id", "GET", "/v1/runs/%00", 404),
    ("get-unicode-id", "GET", "/v1/runs/%C2%B2", 404),
    ("get-bad-escape", "GET", "/v1/runs/%FF%FE", 404),
    ("get-dot-dot", "GET", "/v1/runs/..%2F..%2Fetc", 404),
    ("cancel-unknown", "POST", f"/v1/runs/{RUN}/cancel", 404),
    ("cancel-bad-id", "POST", "/v1/runs/%00/cancel", 404),
    ("history-unknown", "GET", f"/v1/runs/{RUN}/history", 404),
    ("history-bad-id", "GET", "/v1/runs/%C2%B2/history", 404),
    ("logs-bad-id", "GET", "/v1/runs/..%2F..%2Fresults%2Fx/logs", 404),
    ("logs-long-id", "GET", "/v1/runs/" + "l" * 3000 + "/logs", 404),
    ("callbacks-unknown", "GET", f"/v1/runs/{RUN}/callbacks", 404),
    ("callbacks-bad-id", "GET", "/v1/runs/" + "z" * 3000 + "/callbacks", 404),
    ("deliveries-unknown", "GET", f"/v1/runs/{RUN}/deliveries", 404),
    ("deliveries-bad-id", "GET", "/v1/runs/%FF%FE/deliveries", 404),
    ("deliveries-long-id", "GET", "/v1/runs/" + "d" * 5000 + "/deliveries", 404),
    ("retry-unknown-run", "POST", f"/v1/runs/{RUN}/deliveries/msg_0/retry", 404),
    ("retry-nul-id", "POST", f"/v1/runs/{RUN}/deliveries/%00/retry", 404),
    ("retry-dot-dot", "POST", f"/v1/runs/{RUN}/deliveries/..%2F..%2Fx/retry", 404),
    ("retry-wrong-method", "GET", f"/v1/runs/{RUN}/deliveries/msg_0/retry", 405),
    ("task-unknown", "GET", "/v1/tasks/examples/nothing", 404),
    ("task-nul", "GET", "/v1/tasks/%00", 404),
    ("task-unicode", "GET", "/v1/tasks/%C2%B2", 404),
    ("task-long", "GET", "/v1/tasks/" + "a/" * 2000 + "a", 404),
    ("task-path-dots", "GET", "/v1/tasks/../../etc/passwd", 404),
    ("unknown-route", "GET", "/v2/runs", 404),
    ("wrong-method", "PUT", "/v1/runs", 405),
    ("trailing-slash", "GET", "/v1/runs/", 404),
]

CALLBACK_BODIES: list[tuple[str, bytes, int | None]] = [
    ("callback-not-json", b"{", 400),
    ("callback-both", b'{"output": 1, "error": "E"}', 422),
    ("callback-error-long", json.dumps({"error": "E" * 300}).encode(), 422),
    ("callback-cause-long", json.dumps({"error": "E", "cause": "c" * 40_000}).encode(), 422),
    ("callback-surrogate", b'{"output": "\\ud800"}', 400),
    ("callback-deep", b'{"output": ' + nested(5000).encode() + b"}", 400),
    ("callback-unknown", b'{"output": {"approved": true}}', 404),
    ("callback-unknown-field", b'{"output": 1, "approved": true}', 422),
]

COMPAT_BODIES: list[tuple[str, bytes, dict[str, str], int]] = [
    ("compat-no-task", b'{"arguments": {}}', JSON, 422),
    ("compat-task-int", b'{"task_id": 5}', JSON, 422),
    ("compat-task-null", b'{"task_id": null}', JSON, 422),
    ("compat-arguments-list", b'{"task_id": "examples/echo", "arguments": []}', JSON, 422),
    ("compat-arguments-string", b'{"task_id": "examples/echo", "arguments": "x"}', JSON, 422),
    ("compat-task-type", b'{"task_id": "examples/echo", "task_type": "job"}', JSON, 422),
    ("compat-not-json", b'{"task_id": ', JSON, 422),
    ("compat-empty", b"", JSON, 422),
    ("compat-array", b"[1]", JSON, 422),
    ("compat-not-utf8", b'{"task_id": "\xff"}', JSON, 422),
    ("compat-as-text", b'{"task_id": "examples/echo"}', {"Content-Type": "text/plain"}, 422),
    ("compat-deep", b'{"task_id": "examples/echo", "arguments": {"m": ' + nested(5000).encode() + b"}}", JSON, 422),
    ("compat-surrogate", b'{"task_id": "examples/echo", "arguments": {"message": "\\ud800"}}', JSON, 422),
    ("compat-unknown-task", b'{"task_id": "f/public/nope"}', JSON, 200),
    ("compat-bad-arguments", b'{"task_id": "examples/greet", "arguments": {"times": "x"}}', JSON, 200),
]

SCHEDULE = "sch_00000000000000000000000000"


def schedule_body(**fields: Any) -> bytes:
    return json.dumps({"task_id": "examples/echo", "arguments": {"message": "m"}, **fields}).encode()


SCHEDULE_CASES: list[tuple[str, str, str, bytes | None, dict[str, str], int, str | None]] = [
    ("schedule-not-json", "POST", "/v1/schedules", b"{", {}, 400, None),
    ("schedule-empty", "POST", "/v1/schedules", b"", {}, 422, "body"),
    ("schedule-array", "POST", "/v1/schedules", b"[]", {}, 422, None),
    ("schedule-no-expression", "POST", "/v1/schedules", schedule_body(), {}, 422, "body.expression"),
    ("schedule-expression-int", "POST", "/v1/schedules", schedule_body(expression=5), {}, 422, "body.expression"),
    ("schedule-expression-long", "POST", "/v1/schedules", schedule_body(expression="x" * 10_000), {}, 422, None),
    ("schedule-cron-nul", "POST", "/v1/schedules", schedule_body(expression="cron(\u0000)"), {}, 422, None),
    ("schedule-cron-unicode", "POST", "/v1/schedules", schedule_body(expression="cron(² ² ² ² ? ²)"), {}, 422, None),
    ("schedule-rate-huge", "POST", "/v1/schedules", schedule_body(expression="rate(99999999999 days)"), {}, 422, None),
    (
        "schedule-tz-long",
        "POST",
        "/v1/schedules",
        schedule_body(expression="rate(5 minutes)", timezone="A" * 500),
        {},
        422,
        "body.timezone",
    ),
    (
        "schedule-tz-nul",
        "POST",
        "/v1/schedules",
        schedule_body(expression="rate(5 minutes)", timezone="UTC\u0000"),
        {},
        422,
        "body.timezone",
    ),
    (
        "schedule-start-text",
        "POST",
        "/v1/schedules",
        schedule_body(expression="rate(5 minutes)", start_at="soon"),
        {},
        422,
        "body.start_at",
    ),
    (
        "schedule-deep-args",
        "POST",
        "/v1/schedules",
        b'{"task_id": "examples/echo", "expression": "rate(5 minutes)", "arguments": {"m": '
        + nested(5000).encode()
        + b"}}",
        {},
        400,
        None,
    ),
    (
        "schedule-as-text",
        "POST",
        "/v1/schedules",
        schedule_body(expression="rate(5 minutes)"),
        {"Content-Type": "text/plain"},
        415,
        None,
    ),
    ("schedules-cursor-junk", "GET", "/v1/schedules?cursor=%C2%B2", None, {}, 422, "query.cursor"),
    ("schedules-limit-huge", "GET", "/v1/schedules?limit=100000", None, {}, 422, "query.limit"),
    ("schedules-task-bad", "GET", "/v1/schedules?task_id=%00", None, {}, 422, "query.task_id"),
    ("schedule-get-unknown", "GET", f"/v1/schedules/{SCHEDULE}", None, {}, 404, None),
    ("schedule-get-long", "GET", "/v1/schedules/" + "s" * 5000, None, {}, 404, None),
    ("schedule-get-dots", "GET", "/v1/schedules/..%2F..%2Fetc", None, {}, 404, None),
    ("schedule-patch-unknown", "PATCH", f"/v1/schedules/{SCHEDULE}", b'{"enabled": false}', {}, 404, None),
    ("schedule-patch-junk", "PATCH", f"/v1/schedules/{SCHEDULE}", b"\xff\xfe", {}, 400, None),
    ("schedule-patch-field", "PATCH", f"/v1/schedules/{SCHEDULE}", b'{"colour": 1}', {}, 422, "body.colour"),
    ("schedule-delete-unknown", "DELETE", f"/v1/schedules/{SCHEDULE}", None, {}, 404, None),
    ("schedule-delete-bad", "DELETE", "/v1/schedules/%00", None, {}, 404, None),
    ("schedule-execute-unknown", "POST", f"/v1/schedules/{SCHEDULE}/execute", b"{}", {}, 404, None),
    (
        "schedule-execute-args-list",
        "POST",
        f"/v1/schedules/{SCHEDULE}/execute",
        b'{"arguments": []}',
        {},
        422,
        "body.arguments",
    ),
    ("schedule-execute-array", "POST", f"/v1/schedules/{SCHEDULE}/execute", b"[null, null]", {}, 422, None),
    ("schedule-execute-field", "POST", f"/v1/schedules/{SCHEDULE}/execute", b'{"when": "now"}', {}, 422, "body.when"),
    ("keys-not-json", "POST", "/v1/keys", b"{", {}, 400, None),
    ("keys-array", "POST", "/v1/keys", b"[]", {}, 422, None),
    ("keys-bad-scope", "POST", "/v1/keys", b'{"scopes": ["root"]}', {}, 422, "body.scopes.0"),
    ("keys-no-scopes", "POST", "/v1/keys", b'{"scopes": []}', {}, 422, "body.scopes"),
    ("keys-scopes-deep", "POST", "/v1/keys", b'{"scopes": ' + b"[" * 70 + b"]" * 70 + b"}", {}, 400, None),
    ("keys-name-long", "POST", "/v1/keys", json.dumps({"name": "n" * 1000}).encode(), {}, 422, "body.name"),
    ("keys-own-secret", "POST", "/v1/keys", b'{"key": "mine"}', {}, 422, "body.key"),
    ("keys-revoke-unknown", "DELETE", "/v1/keys/key_0000000000000000", None, {}, 404, None),
    ("keys-revoke-long", "DELETE", "/v1/keys/" + "k" * 3000, None, {}, 404, None),
    ("keys-list-junk-query", "GET", "/v1/keys?limit=-1", None, {}, 200, None),
]

AUTH: list[tuple[str, dict[str, str], int]] = [
    ("no-key", {}, 401),
    ("empty-key", {"X-API-KEY": ""}, 401),
    ("wrong-key", {"X-API-KEY": "trk_nope"}, 401),
    ("long-key", {"X-API-KEY": "k" * 10_000}, 401),
    ("bearer-empty", {"Authorization": "Bearer"}, 401),
    ("basic", {"Authorization": "Basic dXNlcjpwYXNz"}, 401),
    ("latin1-key", {"X-API-KEY": "clé"}, 401),
]

CASES: list[Hostile] = [
    *(
        Hostile(name, "POST", "/v1/runs", body, headers, {}, status, location)
        for name, body, headers, status, location in START_BODIES
    ),
    *(
        Hostile(name, "GET", path, None, {}, params, status, location)
        for name, path, params, status, location in QUERIES
    ),
    *(Hostile(name, method, path, None, {}, {}, status) for name, method, path, status in PATHS),
    *(
        Hostile(name, "POST", f"/v1/runs/{RUN}/callbacks/cb_0", body, JSON, {}, status)
        for name, body, status in CALLBACK_BODIES
    ),
    *(
        Hostile(name, "POST", "/api/v0/tools/tasks/run", body, headers, {}, status)
        for name, body, headers, status in COMPAT_BODIES
    ),
    *(
        Hostile(
            name,
            method,
            path.split("?")[0],
            body,
            {**JSON, **headers},
            dict(item.split("=", 1) for item in path.split("?")[1].split("&")) if "?" in path else {},
            status,
            location,
        )
        for name, method, path, body, headers, status, location in SCHEDULE_CASES
    ),
    Hostile("files-not-json", "POST", "/v1/files", b"{filename", JSON, {}, 400),
    Hostile("files-deep", "POST", "/v1/files", nested(5000).encode(), JSON, {}, 422),  # an array
    Hostile("files-array", "POST", "/v1/files", b"[1, 2]", JSON, {}, 422),
    Hostile(
        "files-huge-name", "POST", "/v1/files", b'{"filename": "' + b"a" * 100_000 + b'", "size": 1}', JSON, {}, 422
    ),
    Hostile("files-nul-name", "POST", "/v1/files", b'{"filename": "a\\u0000b", "size": 1}', JSON, {}, 422),
    Hostile("files-negative", "POST", "/v1/files", b'{"filename": "a", "size": -1}', JSON, {}, 422),
    Hostile("query-wait-text", "POST", "/v1/runs", run_body(), JSON, {"wait": "perhaps"}, 422, "query.wait"),
    Hostile(
        "query-wait-timeout-inf",
        "POST",
        "/v1/runs",
        run_body(),
        JSON,
        {"wait_timeout": "1e999"},
        422,
        "query.wait_timeout",
    ),
    Hostile(
        "query-wait-timeout-negative",
        "POST",
        "/v1/runs",
        run_body(),
        JSON,
        {"wait_timeout": "-0.5"},
        422,
        "query.wait_timeout",
    ),
    Hostile(
        "cancel-junk-body",
        "POST",
        f"/v1/runs/{RUN}/cancel",
        b"\xff\x00garbage",
        {"Content-Type": "application/octet-stream"},
        {},
        415,  # a route that reads no body still takes none but JSON
    ),
    Hostile("rerun-unknown", "POST", f"/v1/runs/{RUN}/rerun", None, {}, {}, 404),
    Hostile("rerun-bad-id", "POST", "/v1/runs/%00/rerun", None, {}, {}, 404),
    Hostile("rerun-not-json", "POST", f"/v1/runs/{RUN}/rerun", b"{revision", JSON, {}, 400),
    Hostile("rerun-array", "POST", f"/v1/runs/{RUN}/rerun", b"[1]", JSON, {}, 422),
    Hostile("rerun-deep", "POST", f"/v1/runs/{RUN}/rerun", nested(5000).encode(), JSON, {}, 422),
    Hostile("rerun-wait-text", "POST", f"/v1/runs/{RUN}/rerun", b'{"wait_timeout": "5"}', JSON, {}, 422),
    Hostile(
        "rerun-huge-revision", "POST", f"/v1/runs/{RUN}/rerun", b'{"revision": "' + b"9" * 5000 + b'"}', JSON, {}, 422
    ),
    Hostile("batch-not-json", "POST", "/v1/runs/batch", b"\x00", JSON, {}, 400),
    Hostile("batch-empty", "POST", "/v1/runs/batch", b'{"runs": []}', JSON, {}, 422, "body.runs"),
    Hostile("batch-not-list", "POST", "/v1/runs/batch", b'{"runs": {"task_id": "x"}}', JSON, {}, 422, "body.runs"),
    Hostile(
        "batch-too-many",
        "POST",
        "/v1/runs/batch",
        json.dumps({"runs": [{"task_id": "examples/echo"}] * 101}).encode(),
        JSON,
        {},
        422,
        "body.runs",
    ),
    Hostile("batch-deep", "POST", "/v1/runs/batch", b'{"runs": [' + nested(5000).encode() + b"]}", JSON, {}, 400),
    Hostile("batch-huge", "POST", "/v1/runs/batch", b'{"runs": ["' + b"x" * 11_000_000 + b'"]}', JSON, {}, 413),
]


def test_the_corpus_is_large_and_covers_every_route(stack: Any) -> None:
    assert len(CASES) + len(AUTH) >= 100
    routes = {(route.method, route.pattern.pattern) for route in stack.gateway.routes}
    # the MCP endpoint's hostile cases are tests/test_mcp.py's (JSON-RPC errors, not problems)
    sent = [(case.method, case.path) for case in CASES] + [(method, "/mcp") for _, method, *_ in MCP_HOSTILE]
    hit = {
        (route.method, route.pattern.pattern)
        for method, path in sent
        for route in stack.gateway.routes
        if route.method == method and route.pattern.match(path)
    }
    assert routes - hit == set()


def echo_runs(api: httpx.Client) -> list[str]:
    page = api.get("/v1/runs", params={"task_id": "examples/echo", "limit": 100}).json()
    return [run["run_id"] for run in page["runs"]]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_hostile_request_answers_a_4xx_problem_and_creates_no_run(api: httpx.Client, case: Hostile) -> None:
    before = echo_runs(api)
    response = api.request(
        case.method, case.path, content=case.body, headers=case.headers, params=case.params, timeout=30
    )
    assert response.status_code < 500, response.text
    if case.status is not None:
        assert response.status_code == case.status, response.text
    if response.status_code >= 400:
        assert response.headers["Content-Type"] == "application/problem+json", response.text
        problem = response.json()
        assert problem["status"] == response.status_code and problem["title"] and problem["detail"]
        if case.location is not None:
            assert problem["errors"] and problem["errors"][0]["location"] == case.location, problem
        assert echo_runs(api) == before


@pytest.mark.parametrize(("name", "headers", "status"), AUTH, ids=[name for name, *_ in AUTH])
def test_a_bad_key_is_401_on_every_route(
    anonymous: httpx.Client, name: str, headers: dict[str, str], status: int
) -> None:
    for method, path in (
        ("GET", "/v1/runs"),
        ("POST", "/v1/runs"),
        ("GET", "/v1/tasks"),
        ("POST", "/api/v0/tools/tasks/run"),
    ):
        encoded = {key.encode(): value.encode() for key, value in headers.items()}
        response = anonymous.request(method, path, headers=encoded, content=run_body())
        assert response.status_code == status
        assert response.headers["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("cursor", ["²", "-1", "9" * 40, "1e3", " 1"])
def test_a_bad_history_cursor_of_a_real_flow_run_is_422(api: httpx.Client, cursor: str) -> None:
    run = api.post("/v1/runs", json={"task_id": "examples/batch", "arguments": {"numbers": [1]}, "wait": True}).json()
    response = api.get(f"/v1/runs/{run['run_id']}/history", params={"cursor": cursor})
    assert response.status_code == 422
    assert response.json()["errors"][0]["location"] == "query.cursor"


# Every route that takes a body, with a body it accepts.
BODY_ROUTES = [
    ("POST", "/v1/runs", {"task_id": "examples/echo", "arguments": {"message": "m"}}),
    ("POST", "/api/v0/tools/tasks/run", {"task_id": "examples/echo", "arguments": {"message": "m"}}),
    ("POST", f"/v1/runs/{RUN}/callbacks/cb_0", {"output": 1}),
    ("POST", "/v1/files", {"filename": "a.png", "content_type": "image/png", "size": 10}),
    ("POST", "/v1/schedules", {"task_id": "examples/echo", "expression": "rate(1 day)"}),
    ("PATCH", f"/v1/schedules/{SCHEDULE}", {"enabled": False}),
    ("POST", f"/v1/schedules/{SCHEDULE}/execute", {}),
    ("POST", "/v1/keys", {"name": "form"}),
]
NOT_JSON = [
    ("multipart-no-boundary", "multipart/form-data", b"--x\r\n\r\n--x--", 400),
    ("multipart-other-no-boundary", "multipart/mixed", b"--x\r\n\r\n--x--", 400),
    ("urlencoded", "application/x-www-form-urlencoded", b"name=form&scopes=admin", 415),
    ("text", "text/plain", b'{"name": "form"}', 415),
]


@pytest.mark.parametrize(("method", "path", "accepted"), BODY_ROUTES, ids=[path for _, path, _ in BODY_ROUTES])
@pytest.mark.parametrize(("kind", "content_type", "body", "status"), NOT_JSON, ids=[kind for kind, *_ in NOT_JSON])
def test_a_body_that_is_not_json_is_refused_on_every_route(
    api: httpx.Client,
    method: str,
    path: str,
    accepted: dict[str, Any],
    kind: str,
    content_type: str,
    body: bytes,
    status: int,
) -> None:
    answer = api.request(method, path, content=body, headers={"Content-Type": content_type})
    if path == "/api/v0/tools/tasks/run":
        status = 422  # its contract: 422 for every body it cannot take
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    if kind == NOT_JSON[0][0]:  # while the same request as JSON is taken as such
        assert api.request(method, path, json=accepted).status_code not in (400, 415, 500)


def test_a_form_with_a_boundary_makes_no_key(api: httpx.Client) -> None:
    # Given the stack's keys
    before = len(api.get("/v1/keys").json()["keys"])
    # When a key is asked for with a well-formed multipart body
    form = b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\nsneaky\r\n--b--\r\n'
    answer = api.post("/v1/keys", content=form, headers={"Content-Type": "multipart/form-data; boundary=b"})
    # Then it is refused (only JSON is read), and no key is made from defaults
    assert answer.status_code == 415, answer.text
    assert len(api.get("/v1/keys").json()["keys"]) == before
