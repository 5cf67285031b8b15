"""taskrun: run named tasks over HTTP on AWS Lambda, Step Functions and DynamoDB.

What task modules use (`task`, `flow`, `RunContext`, `File`, `Secret`, `Backoff`, `Limit`) is imported on first use, so
that importing a part of taskrun (a function's handler, the client) loads only that part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"

if TYPE_CHECKING:
    from taskrun.catalog import Limit, RunContext, flow, task
    from taskrun.files import File
    from taskrun.masking import Secret
    from taskrun.models import Backoff

__all__ = ["Backoff", "File", "Limit", "RunContext", "Secret", "__version__", "flow", "task"]

_WHERE = {
    "task": "taskrun.catalog",
    "flow": "taskrun.catalog",
    "RunContext": "taskrun.catalog",
    "Limit": "taskrun.catalog",
    "File": "taskrun.files",
    "Secret": "taskrun.masking",
    "Backoff": "taskrun.models",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'taskrun' has no attribute {name!r}")
