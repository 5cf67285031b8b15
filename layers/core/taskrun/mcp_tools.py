"""The catalog as MCP tools, served at /mcp by the official `mcp` SDK's server.

Each task a key may see is a tool: its name is the task id with each `/` written `__` (MCP
tool names hold letters, digits, `_`, `-` and `.`), its input schema the task's parameters,
its output schema the task's output (wrapped as `{"result": ...}` when it is not an
object). `tools/call` starts a run (`triggered_by: "mcp"`) and waits for it within the
API's wait cap: a run that succeeded is the tool's result (`structuredContent` and a text
block), one that did not, or did not end in time, is a tool result with `isError` naming
the run, so an agent can tell the two apart and follow the run over the HTTP API.

The server is stateless (no session to land on the same Lambda) and answers JSON, for the
handshake-free 2026-07-28 revision and for the earlier ones whose clients still initialize.
A Lambda invocation carries one request: it is handed to the SDK's Streamable HTTP app
through Mangum, a fresh app each time (the SDK's session manager runs once per instance).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import mcp.types as types
from mangum import Mangum
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import INVALID_PARAMS

from taskrun import __version__
from taskrun.access import Caller
from taskrun.catalog import Catalog, TaskDefinition
from taskrun.errors import InvalidInput, PayloadTooLarge, TaskNotFound
from taskrun.ids import task_id_of, tool_name
from taskrun.models import Run, RunStatus, TriggeredBy
from taskrun.service import RunRequest, RunService, wait_seconds

PAGE_SIZE = 100  # tools a tools/list page holds
RESULT = "result"  # the key a result that is not an object is kept under in structuredContent


def _is_object(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "object"


def as_tool(definition: TaskDefinition, name: str) -> types.Tool:
    info = definition.info()
    output = info.output
    output_schema: dict[str, Any] | None = None
    if output:
        output_schema = (
            output
            if _is_object(output)
            else {"type": "object", "properties": {RESULT: output}, "required": [RESULT], "$defs": output.get("$defs")}
        )
        if output_schema.get("$defs") is None:
            output_schema.pop("$defs", None)
    return types.Tool(
        name=name,
        title=definition.task_id,
        description=definition.description or None,
        input_schema=info.parameters,
        output_schema=output_schema,
        annotations=types.ToolAnnotations(title=definition.task_id),
    )


class TaskTools:
    """The MCP handlers over a run service, for the key that sent the request."""

    def __init__(self, service: RunService, catalog: Catalog, show: Any, caller: Caller, since_arrival: float) -> None:
        self._service = service
        self._catalog = catalog
        self._show = show  # a run as the API answers it (secrets masked, a large result linked)
        self._caller = caller
        self._since_arrival = since_arrival

    def _tools(self) -> list[types.Tool]:
        tools = []
        for definition in self._catalog.all(self._caller.tasks):
            name = tool_name(definition.task_id)
            if name is not None:
                tools.append(as_tool(definition, name))
        return tools

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        tools = self._tools()
        cursor = params.cursor if params is not None else None
        start = 0
        if cursor is not None:
            if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 6):
                raise MCPError(INVALID_PARAMS, "the cursor is not one this server gave out")
            start = int(cursor)
        end = start + PAGE_SIZE
        return types.ListToolsResult(tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None)

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        task_id = task_id_of(params.name)
        if tool_name(task_id) != params.name or not self._caller.tasks.allows(task_id):
            raise MCPError(INVALID_PARAMS, f"unknown tool: {params.name}")
        if "runs:write" not in self._caller.scopes:
            return _error_result("this key may not start runs: calling a tool needs the 'runs:write' scope")
        request = RunRequest(
            task_id=task_id,
            arguments=dict(params.arguments or {}),
            triggered_by=TriggeredBy.MCP,
            access=self._caller.tasks,
        )
        settings = self._service.settings
        waiting = wait_seconds(True, None, settings.max_wait_seconds, self._since_arrival)
        try:
            run = self._service.start(request, wait_timeout=waiting)
        except TaskNotFound:
            raise MCPError(INVALID_PARAMS, f"unknown tool: {params.name}") from None
        except InvalidInput as invalid:
            problems = "; ".join(f"{error.location}: {error.message}" for error in invalid.errors)
            return _error_result(f"{invalid}: {problems}" if problems else str(invalid))
        except PayloadTooLarge as large:
            return _error_result(str(large))
        return self._outcome(self._show(run))

    def _outcome(self, run: Run) -> types.CallToolResult:
        meta = {"taskrun/run_id": run.run_id, "taskrun/status": run.status.value}
        if run.status is RunStatus.SUCCEEDED:
            if run.result_url is not None:
                text = f"the result is too large to pass here; fetch it from {run.result_url}"
                return types.CallToolResult(content=[types.TextContent(text=text)], _meta=meta)
            result = run.result
            structured = result if isinstance(result, dict) else {RESULT: result}
            text = json.dumps(result, ensure_ascii=False)
            return types.CallToolResult(
                content=[types.TextContent(text=text)], structured_content=structured, _meta=meta
            )
        if not run.status.is_done:
            waited = f"run {run.run_id} is {run.status.value} and did not end within the wait"
            return _error_result(f"{waited}; follow it at /v1/runs/{run.run_id}", meta)
        error = run.error
        detail = f"{error.type}: {error.message}" if error is not None else run.status.value
        return _error_result(f"run {run.run_id} {run.status.value}: {detail}", meta)


def _error_result(text: str, meta: dict[str, Any] | None = None) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True, _meta=meta)


def server_for(tools: TaskTools) -> Server[Any]:
    return Server(
        "taskrun",
        version=__version__,
        instructions="Each tool runs a taskrun task; a call waits for its run to end, within the API's wait cap.",
        on_list_tools=tools.list_tools,
        on_call_tool=tools.call_tool,
    )


def answer(event: dict[str, Any], context: Any, tools: TaskTools, base_path: str = "/") -> dict[str, Any]:
    """One API Gateway request to /mcp answered by the SDK's Streamable HTTP app (stateless,
    JSON). The gateway has checked the key, so the SDK's own host checks are not needed. A
    stateless server opens no stream for a GET and has no session to DELETE: both are 405."""
    if str(event.get("httpMethod", "POST")).upper() != "POST":
        body = {
            "type": "urn:taskrun:problem:method-not-allowed",
            "title": "Method Not Allowed",
            "status": 405,
            "detail": "this MCP server is stateless: it takes POST alone (no stream to open, no session to end)",
            "errors": [],
        }
        headers = {"Content-Type": "application/problem+json", "Allow": "POST"}
        return {"statusCode": 405, "headers": headers, "body": json.dumps(body), "isBase64Encoded": False}
    app = server_for(tools).streamable_http_app(
        streamable_http_path="/mcp",
        json_response=True,
        stateless_http=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    answered: dict[str, Any] = Mangum(app, lifespan="auto", api_gateway_base_path=base_path)(event, context)
    answered["statusCode"] = int(answered["statusCode"])
    return answered
