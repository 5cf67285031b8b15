"""The catalog as MCP tools, served at /mcp by the official `mcp` SDK's server.

Each task a key may see is a tool: its name is the task id with each `/` written `__` (MCP
tool names hold letters, digits, `_`, `-` and `.`), its input schema the task's parameters,
its output schema the task's output (wrapped as `{"result": ...}` when it is not an
object). `tools/call` starts a run (`triggered_by: "mcp"`) and waits for it within the
API's wait cap: a run that succeeded is the tool's result (`structuredContent` and a text
block), one that did not, or did not end in time, is a tool result with `isError` naming
the run, so an agent can tell the two apart and follow the run over the HTTP API.

A client that declares the tasks extension (`io.modelcontextprotocol/tasks`, SEP-2663) on its
call gets, for a run that does not end within the wait, an MCP task instead: its id is the
run's id, and `tasks/get` and `tasks/cancel` read and cancel the run, for as long as runs are
kept. A call may shorten its wait with `_meta` `taskrun/wait_timeout` (seconds; 0 answers the
task at once).

Resources: each task's description and schemas at `taskrun://tasks/{task_id}` (listed), and a
run's logs at `taskrun://runs/{run_id}/logs` (a template: runs are too many to list).

The server is stateless (no session to land on the same Lambda) and answers JSON, for the
handshake-free 2026-07-28 revision and for the earlier ones whose clients still initialize.
A Lambda invocation carries one request: it is handed to the SDK's Streamable HTTP app
through Mangum, a fresh app each time (the SDK's session manager runs once per instance).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import mcp.types as types
from mangum import Mangum
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import HEADER_MISMATCH, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

from taskrun import __version__
from taskrun.access.scopes import Caller
from taskrun.catalog.definitions import TaskDefinition
from taskrun.catalog.registry import Catalog, closest
from taskrun.errors import InvalidInput, PayloadTooLarge, RunConflict, RunNotFound, TaskNotFound
from taskrun.ids import RUN_ID_PATTERN, task_id_of, tool_name
from taskrun.models import Run, RunStatus, TriggeredBy
from taskrun.runs.service import RunRequest, RunService
from taskrun.runs.waiting import wait_seconds

if TYPE_CHECKING:
    from taskrun.results.runlogs import LogStore

PAGE_SIZE = 100  # tools a tools/list page holds
RESULT = "result"  # the key a result that is not an object is kept under in structuredContent
TASKS = "io.modelcontextprotocol/tasks"  # the tasks extension (SEP-2663)
WAIT_META = "taskrun/wait_timeout"  # a call's own wait, in seconds, within the API's cap
POLL_MILLISECONDS = 1000  # how often a client is asked to poll a task
TASK_URI = "taskrun://tasks/"  # + a task id: the task's description and schemas, as JSON
RUN_URI = "taskrun://runs/"  # + a run id + LOGS: the run's logs, as text
LOGS = "/logs"


class TaskParams(types.RequestParams):
    """The parameters of tasks/get, tasks/update and tasks/cancel."""

    task_id: str = Field(max_length=64)
    request_state: str | None = Field(default=None, max_length=4096)  # taskrun gives none out
    input_responses: dict[str, Any] | None = None  # tasks/update's; no taskrun task asks for input


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

    def __init__(
        self,
        service: RunService,
        catalog: Catalog,
        show: Any,
        caller: Caller,
        since_arrival: float,
        logs: LogStore | None = None,
    ) -> None:
        self._logs = logs  # where runs' logs are kept (none: runs have none)
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

    async def list_resources(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        resources = [
            types.Resource(
                uri=TASK_URI + definition.task_id,
                name=definition.task_id,
                description=f"The description and JSON schemas of {definition.task_id}",
                mime_type="application/json",
            )
            for definition in self._catalog.all(self._caller.tasks)
        ]
        start, end = _page(params)
        return types.ListResourcesResult(
            resources=resources[start:end], next_cursor=str(end) if end < len(resources) else None
        )

    async def list_resource_templates(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        templates = [
            types.ResourceTemplate(
                uri_template=RUN_URI + "{run_id}" + LOGS,
                name="run logs",
                description="What a run's task printed or logged, and its traceback (the last 64 KB)",
                mime_type="text/plain",
            ),
            types.ResourceTemplate(
                uri_template=TASK_URI + "{task_id}",
                name="task",
                description="A task's description and JSON schemas (parameters, output)",
                mime_type="application/json",
            ),
        ]
        return types.ListResourceTemplatesResult(resource_templates=templates)

    async def read_resource(
        self, ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = params.uri
        if uri.startswith(TASK_URI):
            task_id = uri.removeprefix(TASK_URI)
            try:
                definition = self._catalog.get(task_id) if self._caller.tasks.allows(task_id) else None
            except TaskNotFound:
                definition = None
            if definition is not None:
                text = definition.info().model_dump_json()
                return _contents(uri, "application/json", text)
        elif uri.startswith(RUN_URI) and uri.endswith(LOGS):
            run_id = uri.removeprefix(RUN_URI).removesuffix(LOGS)
            if re.fullmatch(RUN_ID_PATTERN, run_id) is not None:
                try:
                    run = self._service.get(run_id, access=self._caller.tasks)
                except RunNotFound:
                    pass
                else:
                    text = self._logs.read(run_id, ended=run.status.is_done).text if self._logs is not None else ""
                    return _contents(uri, "text/plain", text)
        raise MCPError(INVALID_PARAMS, f"Resource not found: {uri[:200]}")

    async def list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        tools = self._tools()
        start, end = _page(params)
        return types.ListToolsResult(tools=tools[start:end], next_cursor=str(end) if end < len(tools) else None)

    def _unknown(self, name: str) -> str:
        """A tool not found, and the closest tool names the caller may call."""
        names = [
            tool
            for definition in self._catalog.all(self._caller.tasks)
            if (tool := tool_name(definition.task_id)) is not None
        ]
        close = closest(name, names)
        return f"unknown tool: {name}" + (f"; did you mean {' or '.join(close)}?" if close else "")

    async def call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult | dict[str, Any]:
        task_id = task_id_of(params.name)
        if tool_name(task_id) != params.name or not self._caller.tasks.allows(task_id):
            raise MCPError(INVALID_PARAMS, self._unknown(params.name))
        if "runs:write" not in self._caller.scopes:
            return _error_result("this key may not start runs: calling a tool needs the 'runs:write' scope")
        request = RunRequest(
            task_id=task_id,
            arguments=dict(params.arguments or {}),
            triggered_by=TriggeredBy.MCP,
            access=self._caller.tasks,
        )
        settings = self._service.settings
        waiting = wait_seconds(True, _wait_asked(params), settings.max_wait_seconds, self._since_arrival)
        try:
            run = self._service.start(request, wait_timeout=waiting)
        except TaskNotFound:
            raise MCPError(INVALID_PARAMS, self._unknown(params.name)) from None
        except InvalidInput as invalid:
            problems = "; ".join(f"{error.location}: {error.message}" for error in invalid.errors)
            return _error_result(f"{invalid}: {problems}" if problems else str(invalid))
        except PayloadTooLarge as large:
            return _error_result(str(large))
        shown = self._show(run)
        if not shown.status.is_done and _takes_tasks(ctx):
            return {"resultType": "task", **_task(shown)}
        return self._outcome(shown)

    async def get_task(self, ctx: ServerRequestContext[Any], params: TaskParams) -> dict[str, Any]:
        """tasks/get: the run as a task; a finished one carries the call's result."""
        _check_task_request(ctx, params)
        try:
            run = self._service.get(params.task_id, access=self._caller.tasks)
        except RunNotFound:
            raise MCPError(INVALID_PARAMS, "Failed to retrieve task: Task not found") from None
        shown = self._show(run)
        task = _task(shown)
        if task["status"] == "completed":
            task["result"] = self._outcome(shown).model_dump(by_alias=True, mode="json", exclude_none=True)
        return task

    async def cancel_task(self, ctx: ServerRequestContext[Any], params: TaskParams) -> dict[str, Any]:
        """tasks/cancel: cancels the run as POST /v1/runs/{id}/cancel does. Acknowledged for
        any id, as the extension says (a run that has ended stays as it ended)."""
        _check_task_request(ctx, params)
        if "runs:write" not in self._caller.scopes:
            raise MCPError(INVALID_REQUEST, "this key may not cancel runs: that needs the 'runs:write' scope")
        with contextlib.suppress(RunNotFound, RunConflict):
            self._service.cancel(params.task_id, access=self._caller.tasks)
        return {}

    async def update_task(self, ctx: ServerRequestContext[Any], params: TaskParams) -> dict[str, Any]:
        """tasks/update: acknowledged; a taskrun task never waits for input from the client."""
        _check_task_request(ctx, params)
        return {}

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


def _page(params: types.PaginatedRequestParams | None) -> tuple[int, int]:
    """Where a page starts and ends: its cursor is the index this server gave out."""
    cursor = params.cursor if params is not None else None
    start = 0
    if cursor is not None:
        if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 6):
            raise MCPError(INVALID_PARAMS, "the cursor is not one this server gave out")
        start = int(cursor)
    return start, start + PAGE_SIZE


def _contents(uri: str, mime_type: str, text: str) -> types.ReadResourceResult:
    return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, mime_type=mime_type, text=text)])


def _wait_asked(params: types.CallToolRequestParams) -> float | None:
    """The call's own wait (`_meta` `taskrun/wait_timeout`, seconds), if it gave one."""
    asked = dict(params.meta or {}).get(WAIT_META)
    if asked is None:
        return None
    if isinstance(asked, bool) or not isinstance(asked, int | float) or not 0 <= asked <= 3600:
        raise MCPError(INVALID_PARAMS, f"_meta {WAIT_META} is a number of seconds from 0 to 3600")
    return float(asked)


def _takes_tasks(ctx: ServerRequestContext[Any]) -> bool:
    """Whether this request's client declared the tasks extension (on the 2026-07-28 revision,
    where extensions exist): only then may a call be answered with a task."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        return False
    capabilities = ctx.session.client_capabilities
    return capabilities is not None and TASKS in (capabilities.extensions or {})


def _check_task_request(ctx: ServerRequestContext[Any], params: TaskParams) -> None:
    """The tasks methods exist on the 2026-07-28 revision alone, and their `Mcp-Name` header
    names the task the body names (SEP-2663's routing header)."""
    if ctx.protocol_version not in MODERN_PROTOCOL_VERSIONS:
        raise MCPError(METHOD_NOT_FOUND, "Method not found", ctx.method)
    headers = getattr(ctx.request, "headers", None)
    if headers is not None and headers.get("mcp-name") != params.task_id:
        raise MCPError(HEADER_MISMATCH, "the Mcp-Name header does not match the request's taskId")
    if re.fullmatch(RUN_ID_PATTERN, params.task_id) is None and ctx.method == "tasks/get":
        raise MCPError(INVALID_PARAMS, "Failed to retrieve task: Task not found")


def _task(run: Run) -> dict[str, Any]:
    """A run as the extension's task: working until it ends; then completed (the call's
    result, an isError one for a run that failed, timed out or expired) or cancelled. A
    working task's statusMessage says where the run is, with its last progress report."""
    view = run.model_dump(mode="json", include={"created_at", "started_at", "ended_at", "progress"})
    times = [view["created_at"], view.get("started_at"), view.get("ended_at")]
    progress = view.get("progress") or {}
    if progress.get("updated_at"):
        times.append(progress["updated_at"])
    if not run.status.is_done:
        status, message = "working", f"run {run.run_id} is {run.status.value}"
        if progress:
            share = f"{progress['done']:g}" + (f"/{progress['total']:g}" if progress.get("total") else "")
            message += f": {share}" + (f" {progress['message']}" if progress.get("message") else "")
    elif run.status is RunStatus.CANCELLED:
        status, message = "cancelled", f"run {run.run_id} was cancelled"
    else:
        status, message = "completed", f"run {run.run_id} {run.status.value}"
    return {
        "taskId": run.run_id,
        "status": status,
        "statusMessage": message,
        "createdAt": view["created_at"],
        "lastUpdatedAt": max(time for time in times if time),
        "ttlSeconds": None,  # runs are kept until they are deleted
        "pollIntervalMilliseconds": POLL_MILLISECONDS,
    }


def _error_result(text: str, meta: dict[str, Any] | None = None) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=True, _meta=meta)


def server_for(tools: TaskTools) -> Server[Any]:
    server: Server[Any] = Server(
        "taskrun",
        version=__version__,
        instructions="Each tool runs a taskrun task; a call waits for its run to end, within the API's wait cap.",
        on_list_tools=tools.list_tools,
        on_call_tool=tools.call_tool,  # type: ignore[arg-type]  # a task in lieu of a result (SEP-2663)
        on_list_resources=tools.list_resources,
        on_list_resource_templates=tools.list_resource_templates,
        on_read_resource=tools.read_resource,
    )
    server.extensions[TASKS] = {}
    server.add_request_handler("tasks/get", TaskParams, tools.get_task)
    server.add_request_handler("tasks/cancel", TaskParams, tools.cancel_task)
    server.add_request_handler("tasks/update", TaskParams, tools.update_task)
    return server


def _problem_answer(status: int, title: str, detail: str, **headers: str) -> dict[str, Any]:
    body = {
        "type": f"urn:taskrun:problem:{title.lower().replace(' ', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        "errors": [],
    }
    headers = {"Content-Type": "application/problem+json", **headers}
    return {"statusCode": status, "headers": headers, "body": json.dumps(body), "isBase64Encoded": False}


def answer(event: dict[str, Any], context: Any, tools: TaskTools, base_path: str = "/") -> dict[str, Any]:
    """One API Gateway request to /mcp answered by the SDK's Streamable HTTP app (stateless,
    JSON). The gateway has checked the key, so the SDK's own host checks are not needed. A
    stateless server opens no stream for a GET and has no session to DELETE: both are 405.
    A request whose credentials the authorizer found ambiguous is 400, as on every route."""
    if refused := ((event.get("requestContext") or {}).get("authorizer") or {}).get("refused"):
        return _problem_answer(400, "Bad Request", str(refused))
    if str(event.get("httpMethod", "POST")).upper() != "POST":
        detail = "this MCP server is stateless: it takes POST alone (no stream to open, no session to end)"
        return _problem_answer(405, "Method Not Allowed", detail, Allow="POST")
    app = server_for(tools).streamable_http_app(
        streamable_http_path="/mcp",
        json_response=True,
        stateless_http=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    answered: dict[str, Any] = Mangum(app, lifespan="auto", api_gateway_base_path=base_path)(event, context)
    answered["statusCode"] = int(answered["statusCode"])
    return answered
