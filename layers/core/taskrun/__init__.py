"""taskrun: run named tasks over HTTP on AWS Lambda, Step Functions and DynamoDB.

What task modules use (`task`, `flow`, `script_step`, `RunContext`, `File`, `Secret`, `Backoff`,
`Limit`) is imported on first use, so that importing a part of taskrun (a function's
handler, the client) loads only that part.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"

if TYPE_CHECKING:
    from taskrun.catalog.context import Limit, RunContext
    from taskrun.catalog.masking import Secret
    from taskrun.catalog.registry import flow, task
    from taskrun.flows.steps import script_step
    from taskrun.models import Backoff
    from taskrun.results.files import File

__all__ = ["Backoff", "File", "Limit", "RunContext", "Secret", "__version__", "flow", "script_step", "task"]

_WHERE = {
    "task": "taskrun.catalog.registry",
    "flow": "taskrun.catalog.registry",
    "script_step": "taskrun.flows.steps",
    "RunContext": "taskrun.catalog.context",
    "Limit": "taskrun.catalog.context",
    "File": "taskrun.results.files",
    "Secret": "taskrun.catalog.masking",
    "Backoff": "taskrun.models",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'taskrun' has no attribute {name!r}")
