"""Who may do what: the scopes a key holds and the tasks it is limited to.

Light on purpose (no AWS SDK): every API function reads the caller from its request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import StringConstraints

Scope = Literal["runs:write", "runs:read", "schedules:write", "schedules:read", "admin"]
ALL_SCOPES: list[Scope] = ["runs:write", "runs:read", "schedules:write", "schedules:read", "admin"]
DEFAULT_SCOPES: list[Scope] = ["runs:write", "runs:read", "schedules:write", "schedules:read"]
# Scopes of keys made before there were five: "runs" let a key do everything but keys.
LEGACY_SCOPES: dict[str, list[Scope]] = {"runs": DEFAULT_SCOPES, "admin": ["admin"]}

# The scope each route of the API needs, by method and resource (the template's path).
ROUTE_SCOPES: dict[tuple[str, str], Scope] = {
    ("POST", "/v1/runs"): "runs:write",
    ("GET", "/v1/runs"): "runs:read",
    ("GET", "/v1/runs/{run_id}"): "runs:read",
    ("POST", "/v1/runs/{run_id}/cancel"): "runs:write",
    ("POST", "/v1/runs/{run_id}/rerun"): "runs:write",
    ("POST", "/v1/runs/batch"): "runs:write",
    ("GET", "/v1/runs/{run_id}/history"): "runs:read",
    ("GET", "/v1/runs/{run_id}/logs"): "runs:read",
    ("GET", "/v1/runs/{run_id}/callbacks"): "runs:read",
    ("POST", "/v1/runs/{run_id}/callbacks/{callback_id}"): "runs:write",
    ("GET", "/v1/runs/{run_id}/deliveries"): "runs:read",
    ("POST", "/v1/runs/{run_id}/deliveries/{delivery_id}/retry"): "runs:write",
    ("GET", "/v1/tasks"): "runs:read",
    ("GET", "/v1/tasks/{task_id+}"): "runs:read",
    ("POST", "/v1/files"): "runs:write",
    ("POST", "/api/v0/tools/tasks/run"): "runs:write",
    ("POST", "/mcp"): "runs:read",  # tools/call needs runs:write too, checked by the function
    ("GET", "/mcp"): "runs:read",
    ("DELETE", "/mcp"): "runs:read",
    ("POST", "/v1/schedules"): "schedules:write",
    ("GET", "/v1/schedules"): "schedules:read",
    ("GET", "/v1/schedules/{schedule_id}"): "schedules:read",
    ("PATCH", "/v1/schedules/{schedule_id}"): "schedules:write",
    ("DELETE", "/v1/schedules/{schedule_id}"): "schedules:write",
    ("POST", "/v1/schedules/{schedule_id}/execute"): "schedules:write",
    ("POST", "/v1/keys"): "admin",
    ("GET", "/v1/keys"): "admin",
    ("DELETE", "/v1/keys/{key_id}"): "admin",
}


def scope_of(method: str, resource: str) -> Scope | None:
    """The scope a route needs; None for a route the table does not name (health, docs)."""
    return ROUTE_SCOPES.get((method.upper(), resource))


def allowed_routes(scopes: Iterable[str]) -> list[str]:
    """The `METHOD/path` part of the execute-api ARNs of every route these scopes open,
    each path parameter a wildcard: the resources of the authorizer's policy."""
    held = set(scopes)
    return sorted(
        method + re.sub(r"\{[^}]+\}", "*", resource)
        for (method, resource), scope in ROUTE_SCOPES.items()
        if scope in held
    )


# An exact task id, or a prefix followed by `*` (`reports/*`, `*` for every task).
TASK_PATTERN = r"^(\*|[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*(/\*)?)$"
TaskPattern = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=TASK_PATTERN)]
MAX_TASK_PATTERNS = 50


@dataclass(frozen=True)
class TaskAccess:
    """The tasks a key may run and see: every task when it names no pattern."""

    patterns: tuple[str, ...] = ()

    @classmethod
    def of(cls, patterns: Iterable[str]) -> TaskAccess:
        kept = tuple(pattern for pattern in patterns if pattern)
        return cls(() if "*" in kept else kept)

    @property
    def everything(self) -> bool:
        return not self.patterns

    def allows(self, task_id: str) -> bool:
        return self.everything or any(
            task_id.startswith(pattern[:-1]) if pattern.endswith("*") else task_id == pattern
            for pattern in self.patterns
        )

    def covers(self, pattern: str) -> bool:
        """Whether every task the pattern names is one this access allows."""
        if self.everything:
            return True
        if pattern == "*":
            return False
        if pattern.endswith("*"):
            prefix = pattern[:-1]
            return any(own.endswith("*") and prefix.startswith(own[:-1]) for own in self.patterns)
        return self.allows(pattern)

    def beyond(self, other: TaskAccess) -> list[str]:
        """The patterns of `other` that name tasks outside this access (`*` for every task)."""
        if other.everything:
            return [] if self.everything else ["*"]
        return [pattern for pattern in other.patterns if not self.covers(pattern)]

    def condition(self, attribute: str = "task_id") -> tuple[str, dict[str, str], dict[str, str]]:
        """A DynamoDB filter expression for the allowed tasks, with its names and values."""
        values: dict[str, str] = {}
        allowed = []
        for at, pattern in enumerate(self.patterns):
            prefix = pattern.endswith("*")
            values[f":task{at}"] = pattern[:-1] if prefix else pattern
            allowed.append(f"begins_with(#task, :task{at})" if prefix else f"#task = :task{at}")
        return "(" + " OR ".join(allowed) + ")", {"#task": attribute}, values


EVERY_TASK = TaskAccess()


@dataclass(frozen=True)
class Caller:
    """Who sent a request, as the authorizer found them: their key, its scopes and tasks."""

    key_id: str
    scopes: frozenset[str]
    tasks: TaskAccess

    @classmethod
    def from_authorizer(cls, context: Mapping[str, Any]) -> Caller:
        return cls(
            key_id=str(context.get("key_id", "")),
            scopes=frozenset(str(context.get("scopes", "")).split()),
            tasks=TaskAccess.of(str(context.get("tasks", "")).split()),
        )
