"""The catalog as MCP tools at /mcp, driven by the official `mcp` client over Streamable
HTTP, through the local stack's gateway, authorizer and MCP function: the handshake-free
2026-07-28 revision (the client's default) and the initialize handshake of 2025-11-25."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, Literal, TypeVar, cast

import httpx
import httpx2
import mcp.types as types
import pytest
from mcp.client import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from taskrun.ids import task_id_of, tool_name
from taskrun.mcp_tools import TASKS
from tests.conftest import API_KEY
from tests.test_scopes import make_key

T = TypeVar("T")
MODES = ["auto", "legacy"]  # 2026-07-28 without a handshake; the initialize handshake


def with_client(base_url: str, headers: dict[str, str], mode: str, use: Callable[[Client], Awaitable[T]]) -> T:
    async def session() -> T:
        async with (
            httpx2.AsyncClient(headers=headers, timeout=60) as http,
            Client(streamable_http_client(f"{base_url}/mcp", http_client=http), mode=mode) as client,
        ):
            return await use(client)

    return asyncio.run(session())


def every_tool(client: Client) -> Awaitable[list[types.Tool]]:
    async def listed() -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor = None
        while True:
            page = await client.list_tools(cursor=cursor)
            tools += page.tools
            cursor = page.next_cursor
            if cursor is None:
                return tools

    return listed()


def refusal(name: str, arguments: dict[str, Any]) -> Callable[[Client], Awaitable[MCPError]]:
    """A call the server answers with a protocol error: that error."""

    async def call(client: Client) -> MCPError:
        try:
            await client.call_tool(name, arguments)
        except MCPError as error:
            return error
        raise AssertionError(f"the call of {name!r} was answered")

    return call


def test_tool_names_stand_for_task_ids_and_read_back() -> None:
    assert tool_name("examples/order/reserve") == "examples__order__reserve"
    assert task_id_of("examples__order__reserve") == "examples/order/reserve"
    assert tool_name("plain.task-1_a") == "plain.task-1_a" == task_id_of("plain.task-1_a")
    assert tool_name("holds__two") is None  # could not be read back: not offered as a tool
    assert tool_name("a" * 129) is None


@pytest.mark.parametrize("mode", MODES)
def test_every_task_is_a_tool_with_the_catalogs_schemas(api: httpx.Client, base_url: str, mode: str) -> None:
    catalog = api.get("/v1/tasks").json()["tasks"]
    tools = with_client(base_url, {"X-API-KEY": API_KEY}, mode, every_tool)
    by_name = {tool.name: tool for tool in tools}
    offered = {task["task_id"]: task for task in catalog if tool_name(task["task_id"]) is not None}
    assert set(by_name) == {tool_name(task_id) for task_id in offered}
    greet = by_name["examples__greet"]
    assert greet.input_schema == offered["examples/greet"]["parameters"]
    assert greet.output_schema == offered["examples/greet"]["output"]  # an object: as it is
    assert greet.description == "Greet someone, one or more times."
    assert greet.title == "examples/greet"
    countdown = by_name["examples__countdown"]  # answers a string: wrapped as {"result": ...}
    assert countdown.output_schema == {
        "type": "object",
        "properties": {"result": offered["examples/countdown"]["output"]},
        "required": ["result"],
    }


@pytest.mark.parametrize("mode", MODES)
def test_a_call_runs_the_task_and_answers_its_result(api: httpx.Client, base_url: str, mode: str) -> None:
    async def call(client: Client) -> types.CallToolResult:
        return await client.call_tool("examples__greet", {"name": "Ada", "times": 2})

    result = with_client(base_url, {"Authorization": f"Bearer {API_KEY}"}, mode, call)
    assert result.is_error is False
    assert result.structured_content == {"greeting": "hello Ada hello Ada!"}
    assert isinstance(result.content[0], types.TextContent)
    assert result.content[0].text == '{"greeting": "hello Ada hello Ada!"}'
    # and the call is a run, kept as any other, started by mcp
    run_id = result.meta["taskrun/run_id"] if result.meta else None
    run = api.get(f"/v1/runs/{run_id}").json()
    assert (run["task_id"], run["status"], run["triggered_by"]) == ("examples/greet", "succeeded", "mcp")
    assert run["arguments"]["name"] == "Ada"


def test_a_result_that_is_not_an_object_is_wrapped(base_url: str) -> None:
    async def call(client: Client) -> types.CallToolResult:
        return await client.call_tool("examples__countdown", {"seconds": 1})

    result = with_client(base_url, {"X-API-KEY": API_KEY}, "auto", call)
    assert result.is_error is False and result.structured_content == {"result": "lift-off"}


@pytest.mark.parametrize("mode", MODES)
def test_a_failed_run_is_a_tool_error_naming_the_run_not_a_protocol_error(
    api: httpx.Client, base_url: str, mode: str
) -> None:
    async def call(client: Client) -> types.CallToolResult:
        return await client.call_tool("examples__fail", {"message": "the fuse was lit"})

    result = with_client(base_url, {"X-API-KEY": API_KEY}, mode, call)
    assert result.is_error is True
    assert isinstance(result.content[0], types.TextContent)
    text = result.content[0].text
    assert "failed: execution_error: the fuse was lit" in text
    run_id = result.meta["taskrun/run_id"] if result.meta else None
    assert run_id is not None and run_id in text
    assert api.get(f"/v1/runs/{run_id}").json()["status"] == "failed"


def test_bad_arguments_name_each_location_and_start_no_run(api: httpx.Client, base_url: str) -> None:
    before = api.get("/v1/runs", params={"task_id": "examples/greet", "limit": 100}).json()["runs"]

    async def call(client: Client) -> types.CallToolResult:
        return await client.call_tool("examples__greet", {"times": 11, "style": {"punctuation": "!!!!"}})

    result = with_client(base_url, {"X-API-KEY": API_KEY}, "auto", call)
    assert result.is_error is True
    assert isinstance(result.content[0], types.TextContent)
    text = result.content[0].text
    for location in ("body.arguments.name", "body.arguments.times", "body.arguments.style.punctuation"):
        assert location in text
    after = api.get("/v1/runs", params={"task_id": "examples/greet", "limit": 100}).json()["runs"]
    assert [run["run_id"] for run in after] == [run["run_id"] for run in before]


@pytest.mark.parametrize("name", ["no__such__task", "examples/greet", "holds__two__", ""])
def test_an_unknown_tool_is_a_protocol_error(base_url: str, name: str) -> None:
    refused = with_client(base_url, {"X-API-KEY": API_KEY}, "auto", refusal(name, {}))
    assert refused.code == -32602 and "unknown tool" in refused.message


def test_a_near_miss_of_a_tool_s_name_is_offered_the_right_one(base_url: str) -> None:
    refused = with_client(base_url, {"X-API-KEY": API_KEY}, "auto", refusal("examples_greet", {"name": "x"}))
    assert refused.code == -32602
    assert refused.message.startswith("unknown tool: examples_greet; did you mean examples__greet"), refused.message


def test_a_key_limited_to_some_tasks_sees_and_calls_only_their_tools(api: httpx.Client, base_url: str) -> None:
    limited = make_key(api, ["runs:write", "runs:read"], ["examples/math/*", "examples/echo"])
    tools = with_client(base_url, limited, "auto", every_tool)
    names = sorted(tool.name for tool in tools)
    assert names == ["examples__echo", "examples__math__square", "examples__math__sum"]

    refused = with_client(base_url, limited, "auto", refusal("examples__greet", {"name": "x"}))
    assert refused.code == -32602 and refused.message.startswith("unknown tool: examples__greet")
    assert "examples__greet?" not in refused.message  # never offered a tool the key may not call


def test_a_read_only_key_lists_tools_but_a_call_is_refused_as_a_tool_error(api: httpx.Client, base_url: str) -> None:
    reader = make_key(api, ["runs:read"])
    assert "examples__greet" in {tool.name for tool in with_client(base_url, reader, "auto", every_tool)}

    async def call(client: Client) -> types.CallToolResult:
        return await client.call_tool("examples__greet", {"name": "x"})

    result = with_client(base_url, reader, "auto", call)
    assert result.is_error is True
    assert isinstance(result.content[0], types.TextContent) and "runs:write" in result.content[0].text


def test_no_key_or_a_wrong_one_is_401_and_a_key_without_runs_read_403(
    api: httpx.Client, anonymous: httpx.Client
) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    assert anonymous.post("/mcp", json=body).status_code == 401
    assert anonymous.post("/mcp", json=body, headers={"Authorization": "Bearer trk_wrong"}).status_code == 401
    schedules_only = make_key(api, ["schedules:read"])
    refused = anonymous.post("/mcp", json=body, headers=schedules_only)
    assert refused.status_code == 403 and "scope" in refused.json()["detail"]


def nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


def rpc(method: str, params: Any = None, id: Any = 1) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return json.dumps(message).encode()


HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
# name, method, body, headers, the status owed: JSON-RPC's errors as the SDK answers them (a
# message it cannot read 400, one it can 200 with the error), the gateway's 413, 405 for what a
# stateless server does not serve
HOSTILE = [
    ("not-json", "POST", b"\x00{", HEADERS, 400),
    ("null", "POST", b"null", HEADERS, 400),
    ("array", "POST", b"[]", HEADERS, 400),
    ("batch", "POST", b"[" + rpc("tools/list") + b"," + rpc("tools/list", id=2) + b"]", HEADERS, 400),
    ("string", "POST", b'"tools/list"', HEADERS, 400),
    ("no-method", "POST", b'{"jsonrpc": "2.0", "id": 1}', HEADERS, 400),
    ("method-number", "POST", b'{"jsonrpc": "2.0", "id": 1, "method": 5}', HEADERS, 400),
    ("unknown-method", "POST", rpc("tasks/explode"), HEADERS, 200),
    ("params-list", "POST", rpc("tools/call", ["examples__echo"]), HEADERS, 400),
    ("name-number", "POST", rpc("tools/call", {"name": 5, "arguments": {}}), HEADERS, 200),
    ("arguments-list", "POST", rpc("tools/call", {"name": "examples__echo", "arguments": [1]}), HEADERS, 200),
    (
        "arguments-deep",
        "POST",
        rpc("tools/call", {"name": "examples__echo", "arguments": {"message": 0}}).replace(
            b"0}", nested(5000).encode() + b"}", 1
        ),
        HEADERS,
        400,
    ),
    ("body-deep", "POST", nested(100_000).encode(), HEADERS, 400),
    (
        "arguments-huge",
        "POST",
        rpc("tools/call", {"name": "examples__echo", "arguments": {"message": "x" * 300_000}}),
        HEADERS,
        200,
    ),
    ("body-huge", "POST", b'{"jsonrpc": "2.0", "id": 1, "method": "' + b"x" * 11_000_000 + b'"}', HEADERS, 413),
    ("cursor-junk", "POST", rpc("tools/list", {"cursor": "-1"}), HEADERS, 200),
    ("cursor-huge", "POST", rpc("tools/list", {"cursor": "9" * 40}), HEADERS, 200),
    ("text-plain", "POST", rpc("tools/list"), {"Content-Type": "text/plain", "Accept": "application/json"}, 400),
    ("accepts-html", "POST", rpc("tools/list"), {"Content-Type": "application/json", "Accept": "text/html"}, 406),
    ("old-version", "POST", rpc("tools/list"), {**HEADERS, "MCP-Protocol-Version": "1999-01-01"}, 400),
    ("task-id-number", "POST", rpc("tasks/get", {"taskId": 5}), HEADERS, 200),
    ("task-id-missing", "POST", rpc("tasks/cancel", {}), HEADERS, 200),
    ("task-id-huge", "POST", rpc("tasks/get", {"taskId": "run_" + "0" * 100_000}), HEADERS, 200),
    ("task-state-huge", "POST", rpc("tasks/update", {"taskId": "t", "requestState": "s" * 100_000}), HEADERS, 200),
    ("tasks-result", "POST", rpc("tasks/result", {"taskId": "run_0000000000000000000000000a"}), HEADERS, 200),
    ("resource-uri-number", "POST", rpc("resources/read", {"uri": 5}), HEADERS, 200),
    ("resource-uri-huge", "POST", rpc("resources/read", {"uri": "taskrun://tasks/" + "x" * 300_000}), HEADERS, 200),
    ("resource-uri-traversal", "POST", rpc("resources/read", {"uri": "taskrun://runs/../logs"}), HEADERS, 200),
    ("get", "GET", None, HEADERS, 405),
    ("delete", "DELETE", None, HEADERS, 405),
]


@pytest.mark.parametrize(("name", "method", "body", "headers", "status"), HOSTILE, ids=[case[0] for case in HOSTILE])
def test_a_hostile_request_is_answered_as_the_protocol_says_and_starts_no_run(
    api: httpx.Client, name: str, method: str, body: bytes | None, headers: dict[str, str], status: int
) -> None:
    before = api.get("/v1/runs", params={"task_id": "examples/echo", "limit": 100}).json()["runs"]
    answer = api.request(method, "/mcp", content=body, headers=headers, timeout=30)
    assert answer.status_code == status, answer.text
    if status == 200:  # a JSON-RPC answer: an error, or a tool error
        message = answer.json()
        assert "error" in message or message["result"].get("isError") is True, message
    if status == 405:
        assert answer.headers["Allow"] == "POST"
    after = api.get("/v1/runs", params={"task_id": "examples/echo", "limit": 100}).json()["runs"]
    assert after == before


# MCP tasks (SEP-2663): the official client speaks an extension through ClientExtension, whose
# claim on `resultType: "task"` is resolved by polling tasks/get as the extension describes.


class TaskRef(types.RequestParams):
    task_id: str


class GetTask(types.Request[TaskRef, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    name_param = "taskId"  # the routing header the extension asks for: Mcp-Name = the task's id


class CancelTask(types.Request[TaskRef, Literal["tasks/cancel"]]):
    method: Literal["tasks/cancel"] = "tasks/cancel"
    name_param = "taskId"


class TaskState(types.Result):
    """A task as tasks/get answers it."""

    result_type: str | None = None
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_seconds: int | None
    poll_interval_milliseconds: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class CreatedTask(types.Result):
    """A call answered with a task instead of its result."""

    result_type: Literal["task"] = "task"
    task_id: str
    status: str
    status_message: str | None = None
    created_at: str
    last_updated_at: str
    ttl_seconds: int | None
    poll_interval_milliseconds: int | None = None


async def task_state(client: Client, task_id: str) -> TaskState:
    return await client.session.send_request(GetTask(params=TaskRef(task_id=task_id)), TaskState)


class Tasks(ClientExtension):
    """The tasks extension, polling each task to its end; every state seen is kept."""

    identifier = TASKS

    def __init__(self) -> None:
        self.seen: list[TaskState] = []

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreatedTask, resolve=self.follow)]

    async def follow(self, created: CreatedTask, context: ClaimContext) -> types.CallToolResult:
        while True:
            state = await context.session.send_request(GetTask(params=TaskRef(task_id=created.task_id)), TaskState)
            self.seen.append(state)
            if state.status == "completed":
                return types.CallToolResult.model_validate(state.result)
            if state.status in ("failed", "cancelled"):
                raise AssertionError(f"the task ended {state.status}")
            await asyncio.sleep((state.poll_interval_milliseconds or 1000) / 1000)


def with_tasks(base_url: str, use: Callable[[Client], Awaitable[T]], extension: Tasks | None = None) -> T:
    async def session() -> T:
        async with (
            httpx2.AsyncClient(headers={"X-API-KEY": API_KEY}, timeout=60) as http,
            Client(
                streamable_http_client(f"{base_url}/mcp", http_client=http), extensions=[extension or Tasks()]
            ) as client,
        ):
            return await use(client)

    return asyncio.run(session())


AT_ONCE = cast(types.RequestParamsMeta, {"taskrun/wait_timeout": 0})  # a call answered before its run ends


def test_a_call_that_outlasts_its_wait_is_a_task_followed_to_its_result(api: httpx.Client, base_url: str) -> None:
    # Given a client that takes tasks, calling a countdown of 3 s that it will not wait for
    async def call_at_once(client: Client) -> Any:
        return await client.session.call_tool("examples__countdown", {"seconds": 3}, meta=AT_ONCE, allow_claimed=True)

    created = with_tasks(base_url, call_at_once)
    # Then the answer is a working task whose id is its run's, kept like any run
    assert isinstance(created, CreatedTask)
    assert created.status == "working" and created.ttl_seconds is None
    run = api.get(f"/v1/runs/{created.task_id}").json()
    assert (run["task_id"], run["triggered_by"]) == ("examples/countdown", "mcp")

    # When a client follows a task through the SDK's claim, polling tasks/get
    tasks = Tasks()

    async def call(client: Client) -> types.CallToolResult:
        return await client.call_tool("examples__countdown", {"seconds": 3}, meta=AT_ONCE)

    result = with_tasks(base_url, call, tasks)
    # Then the call's result is the run's, and while it ran the task said how far it had come
    assert result.is_error is False and result.structured_content == {"result": "lift-off"}
    working = [state for state in tasks.seen if state.status == "working"]
    assert working and all(state.result is None for state in working)
    assert any(" s to go" in (state.status_message or "") for state in working), [s.status_message for s in working]
    final = tasks.seen[-1]
    assert final.status == "completed" and final.result is not None
    assert final.result["_meta"]["taskrun/status"] == "succeeded"
    # and the first task, left alone meanwhile, has ended the same way
    first = with_tasks(base_url, lambda client: task_state(client, created.task_id))
    assert first.status == "completed" and first.result is not None
    assert first.result["structuredContent"] == {"result": "lift-off"}


def test_a_client_without_the_tasks_extension_gets_a_tool_error_naming_the_run(base_url: str) -> None:
    async def call(client: Client) -> types.CallToolResult:
        return await client.call_tool("examples__countdown", {"seconds": 2}, meta=AT_ONCE)

    for mode in MODES:
        result = with_client(base_url, {"X-API-KEY": API_KEY}, mode, call)
        assert result.is_error is True and result.meta is not None
        assert isinstance(result.content[0], types.TextContent)
        assert f"follow it at /v1/runs/{result.meta['taskrun/run_id']}" in result.content[0].text


def test_a_failing_run_s_task_completes_with_a_tool_error(base_url: str) -> None:
    async def call(client: Client) -> types.CallToolResult:
        return await client.call_tool("examples__fail", {"message": "slowly lit"}, meta=AT_ONCE)

    result = with_tasks(base_url, call)
    assert result.is_error is True
    assert isinstance(result.content[0], types.TextContent)
    assert "failed: execution_error: slowly lit" in result.content[0].text


@pytest.mark.parametrize(
    ("name", "arguments"),
    [
        ("examples__countdown", {"seconds": 60}),
        ("noisy__paced", {"lines": 60}),
        ("examples__order_code", {"order_id": "t-1", "quantity": 1, "approval": True}),
    ],
    ids=["script", "flow", "code-first flow"],
)
def test_a_cancelled_task_stops_its_run(api: httpx.Client, base_url: str, name: str, arguments: dict[str, Any]) -> None:
    # Given a task of a run a minute long (a script's, or a flow's execution)
    async def cancel_one(client: Client) -> tuple[CreatedTask, list[TaskState]]:
        created = await client.session.call_tool(name, arguments, meta=AT_ONCE, allow_claimed=True)
        assert isinstance(created, CreatedTask)
        # When the client cancels it
        ack = await client.session.send_request(CancelTask(params=TaskRef(task_id=created.task_id)), types.Result)
        assert ack.meta is None or "taskrun/run_id" not in ack.meta
        states = [await task_state(client, created.task_id)]
        while states[-1].status == "working":
            await asyncio.sleep(0.2)
            states.append(await task_state(client, created.task_id))
        return created, states

    created, states = with_tasks(base_url, cancel_one)
    # Then the task is cancelled, and so is its run, as POST /v1/runs/{id}/cancel does
    assert states[-1].status == "cancelled" and states[-1].result is None
    run = api.get(f"/v1/runs/{created.task_id}").json()
    assert run["status"] == "cancelled" and run["error"]["type"] == "cancelled"


def test_tasks_of_other_keys_or_unknown_ids_are_not_found_and_a_reader_cannot_cancel(
    api: httpx.Client, base_url: str
) -> None:
    started = api.post("/v1/runs", json={"task_id": "examples/countdown", "arguments": {"seconds": 30}}).json()
    run_id = started["run_id"]

    async def refused(client: Client, request: Any) -> MCPError:
        try:
            await client.session.send_request(request, TaskState)
        except MCPError as error:
            return error
        raise AssertionError("answered")

    def asked(headers: dict[str, str], request: Any) -> MCPError:
        async def session() -> MCPError:
            async with (
                httpx2.AsyncClient(headers=headers, timeout=60) as http,
                Client(streamable_http_client(f"{base_url}/mcp", http_client=http), extensions=[Tasks()]) as client,
            ):
                return await refused(client, request)

        return asyncio.run(session())

    for task_id in ("run_0000000000000000000000000a", "not-a-run", "x" * 64):
        error = asked({"X-API-KEY": API_KEY}, GetTask(params=TaskRef(task_id=task_id)))
        assert (error.code, error.message) == (-32602, "Failed to retrieve task: Task not found")
    elsewhere = make_key(api, ["runs:read", "runs:write"], ["examples/math/*"])
    error = asked(elsewhere, GetTask(params=TaskRef(task_id=run_id)))
    assert error.code == -32602  # a run of a task outside the key's patterns is not its task
    reader = make_key(api, ["runs:read"])
    error = asked(reader, CancelTask(params=TaskRef(task_id=run_id)))
    assert error.code == -32600 and "runs:write" in error.message
    assert api.get(f"/v1/runs/{run_id}").json()["status"] in ("pending", "running")
    assert api.post(f"/v1/runs/{run_id}/cancel").json()["status"] == "cancelled"


def test_tasks_methods_are_refused_on_the_handshake_revisions_and_with_a_wrong_routing_header(
    api: httpx.Client, base_url: str
) -> None:
    run_id = api.post("/v1/runs", json={"task_id": "examples/echo", "arguments": {"message": "m"}}).json()["run_id"]

    async def legacy_get(client: Client) -> MCPError:
        try:
            await client.session.send_request(GetTask(params=TaskRef(task_id=run_id)), TaskState)
        except MCPError as error:
            return error
        raise AssertionError("answered")

    error = with_client(base_url, {"X-API-KEY": API_KEY}, "legacy", legacy_get)
    assert error.code == -32601  # 2025-11-25's tasks are not served: the server never offers them there
    # a routing header naming another task than the body
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tasks/get",
        "params": {
            "taskId": run_id,
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientCapabilities": {"extensions": {TASKS: {}}},
            },
        },
    }
    headers = {**HEADERS, "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tasks/get"}
    for name, code in ((run_id, None), ("run_0000000000000000000000000a", -32020), (None, -32020)):
        sent = headers if name is None else {**headers, "Mcp-Name": name}
        answer = api.post("/mcp", content=json.dumps(body).encode(), headers=sent)
        message = answer.json()
        if code is None:
            assert message["result"]["taskId"] == run_id, message
        else:
            assert message["error"]["code"] == code, message


# Resources: each task's schemas, and a run's logs


@pytest.mark.parametrize("mode", MODES)
def test_tasks_and_run_logs_are_resources(api: httpx.Client, base_url: str, mode: str) -> None:
    run = api.post(
        "/v1/runs", json={"task_id": "examples/countdown", "arguments": {"seconds": 2}}, params={"wait": "true"}
    ).json()
    assert run["status"] == "succeeded"
    logs_uri = f"taskrun://runs/{run['run_id']}/logs"

    async def browse(client: Client) -> tuple[Any, Any, Any, Any]:
        listed = await client.list_resources()
        templates = await client.list_resource_templates()
        task = await client.read_resource("taskrun://tasks/examples/order/reserve")
        logs = await client.read_resource(logs_uri)
        return listed, templates, task, logs

    listed, templates, task, logs = with_client(base_url, {"X-API-KEY": API_KEY}, mode, browse)
    catalog = api.get("/v1/tasks").json()["tasks"]
    assert sorted(resource.uri for resource in listed.resources) == sorted(
        f"taskrun://tasks/{entry['task_id']}" for entry in catalog
    )
    assert {template.uri_template for template in templates.resource_templates} == {
        "taskrun://runs/{run_id}/logs",
        "taskrun://tasks/{task_id}",
    }
    (content,) = task.contents
    assert content.mime_type == "application/json"
    assert json.loads(content.text) == api.get("/v1/tasks/examples/order/reserve").json()
    (content,) = logs.contents
    assert content.mime_type == "text/plain" and content.uri == logs_uri
    assert content.text == api.get(f"/v1/runs/{run['run_id']}/logs").json()["text"]
    assert "2...\n1...\n" in content.text


def test_resources_outside_a_key_s_tasks_or_unknown_are_not_found(api: httpx.Client, base_url: str) -> None:
    run_id = api.post("/v1/runs", json={"task_id": "examples/echo", "arguments": {"message": "m"}}).json()["run_id"]
    limited = make_key(api, ["runs:read"], ["examples/math/*"])

    def missing(headers: dict[str, str], uri: str) -> MCPError:
        async def read(client: Client) -> MCPError:
            try:
                await client.read_resource(uri)
            except MCPError as error:
                return error
            raise AssertionError(f"{uri} was read")

        return with_client(base_url, headers, "auto", read)

    for uri in (f"taskrun://runs/{run_id}/logs", "taskrun://tasks/examples/echo"):
        error = missing(limited, uri)
        assert error.code == -32602 and error.message.startswith("Resource not found"), error
    for uri in (
        "taskrun://tasks/no/such",
        "taskrun://runs/run_0000000000000000000000000a/logs",
        "taskrun://runs/../../etc/passwd/logs",
        "file:///etc/passwd",
        "taskrun://tasks/" + "x" * 10_000,
    ):
        error = missing({"X-API-KEY": API_KEY}, uri)
        assert error.code == -32602 and error.message.startswith("Resource not found"), error

    async def listed(client: Client) -> list[str]:
        return [resource.uri for resource in (await client.list_resources()).resources]

    assert sorted(with_client(base_url, limited, "auto", listed)) == [
        "taskrun://tasks/examples/math/square",
        "taskrun://tasks/examples/math/sum",
    ]


def test_a_code_first_flow_is_a_tool_too(api: httpx.Client, base_url: str, tmp_path: Any) -> None:
    async def call(client: Client) -> types.CallToolResult:
        return await client.call_tool("examples__order_code", {"order_id": "m-1", "quantity": 3})

    result = with_client(base_url, {"X-API-KEY": API_KEY}, "auto", call)
    assert result.is_error is False, result
    assert result.structured_content is not None and result.structured_content["status"] == "shipped"
    run_id = result.meta["taskrun/run_id"] if result.meta else None
    run = api.get(f"/v1/runs/{run_id}").json()
    assert (run["task_type"], run["triggered_by"], run["status"]) == ("flow", "mcp", "succeeded")


def test_a_code_first_flow_s_long_call_is_a_task_followed_to_its_result(base_url: str) -> None:
    async def call(client: Client) -> types.CallToolResult:
        arguments = {"order_id": "t-2", "quantity": 1, "cool_down": 2}
        return await client.call_tool("examples__order_code", arguments, meta=AT_ONCE)

    result = with_tasks(base_url, call)
    assert result.is_error is False, result
    assert result.structured_content is not None and result.structured_content["status"] == "shipped"


def test_the_docs_python_snippet_runs_as_written(base_url: str) -> None:
    """docs/mcp.md's Python example, copied out as a reader copies it and run as a script."""
    import os
    import re
    import subprocess
    import sys
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "mcp.md").read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    env = {**os.environ, "TASKRUN_API_KEY": API_KEY, "TASKRUN_URL": base_url}
    ran = subprocess.run([sys.executable, "-c", snippet], env=env, capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr[-2000:]
    count, result = ran.stdout.splitlines()
    assert count.endswith(" tools") and int(count.split()[0]) > 10
    assert result == "{'greeting': 'hello Ada!'}"
