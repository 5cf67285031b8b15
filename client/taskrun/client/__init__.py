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

import importlib
from typing import TYPE_CHECKING, Any

DEFAULT_URL = "http://127.0.0.1:9477"  # the local stack's address (`taskrun local`)

if TYPE_CHECKING:
    from taskrun.client.asynchronous import AsyncClient
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

# Each name is imported from its module when first asked for, so that a program that reads
# only DEFAULT_URL (the `taskrun local` command, say) does not load httpx and the client.
_MODULE_OF = {"AsyncClient": "taskrun.client.asynchronous", "Client": "taskrun.client.sync"}
_WHERE = {name: _MODULE_OF.get(name, "taskrun.client.errors") for name in __all__ if name != "DEFAULT_URL"}

if not TYPE_CHECKING:  # type checkers see the names imported above, and no others

    def __getattr__(name: str) -> Any:
        if name not in _WHERE:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(_WHERE[name]), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_WHERE})
