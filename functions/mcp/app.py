"""POST /mcp: the catalog's tasks as MCP tools (taskrun.mcp_tools), for the key that sent
the request, over the official SDK's stateless Streamable HTTP server."""

import time
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskrun.access.scopes import Caller
from taskrun.runtime import log_store, plain_handler, run_service, task_catalog, view


def handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from taskrun.mcp_tools import TaskTools, answer  # the MCP SDK, with the first request (half a second)

    request_context = event.get("requestContext") or {}
    arrived_ms = request_context.get("requestTimeEpoch")
    since_arrival = max(0.0, time.time() - arrived_ms / 1000) if arrived_ms else 0.0
    tools = TaskTools(
        run_service(),
        task_catalog(),
        view,
        Caller.from_authorizer(request_context.get("authorizer") or {}),
        since_arrival,
        log_store(),
    )
    return answer(event, context, tools)


lambda_handler = plain_handler(handle)
