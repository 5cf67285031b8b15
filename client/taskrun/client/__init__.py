"""A Python client of the taskrun API, sync (`Client`) and async (`AsyncClient`), on httpx.

    from taskrun.client import Client

    with Client() as taskrun:  # TASKRUN_URL and TASKRUN_API_KEY, else the local stack
        run = taskrun.run("examples/greet", {"name": "Ada"}, wait=60)
        print(run.status, run.result)

Answers are the API's own pydantic models (`RunView`, `TaskInfo`, ...). An error answer
raises a `ProblemError` of its status (`NotFound`, `Invalid`, ...) carrying the problem
document. Requests are retried only where that is safe: reads, and run creation, which is
sent with an Idempotency-Key so that a retry answers the first run rather than starting
another.
"""

from __future__ import annotations

from taskrun.client.asynchronous import AsyncClient
from taskrun.client.calls import DEFAULT_URL
from taskrun.client.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    ServerError,
    TaskrunError,
    Throttled,
    Unauthorized,
)
from taskrun.client.sync import Client

__all__ = [
    "DEFAULT_URL",
    "AsyncClient",
    "BadRequest",
    "Client",
    "Conflict",
    "Forbidden",
    "Invalid",
    "NotFound",
    "PayloadTooLarge",
    "ProblemError",
    "ServerError",
    "TaskrunError",
    "Throttled",
    "Unauthorized",
]
