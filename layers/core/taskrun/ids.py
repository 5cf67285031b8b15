"""Identifiers shared by every boundary, typed once."""

from __future__ import annotations

import secrets
import time
from typing import Annotated

from pydantic import Field

TASK_ID_PATTERN = r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$"

TaskId = Annotated[
    str,
    Field(min_length=1, max_length=200, pattern=TASK_ID_PATTERN, examples=["examples/greet"]),
]
# An http(s) URL with no space in it; which hosts it may reach is checked when it is given
WEBHOOK_URL_PATTERN = r"^[hH][tT][tT][pP][sS]?://[^\s/?#]+[^\s]*$"
WebhookUrl = Annotated[
    str, Field(max_length=2048, pattern=WEBHOOK_URL_PATTERN, examples=["https://example.com/hooks/taskrun"])
]
RUN_ID_PATTERN = r"^run_[0-9a-z]{26}$"
RunId = Annotated[str, Field(pattern=RUN_ID_PATTERN, examples=["run_01jd0m4x7c5q8n2v6b3k9w1t0e"])]

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def new_run_id() -> str:
    """A ULID-shaped id: time-ordered, so ids sort like creation times, and 80 random bits."""
    return _run_id((time.time_ns() // 1_000_000) << 80 | secrets.randbits(80))


def first_run_id_at(seconds: float) -> str:
    """The lowest id a run made at `seconds` (Unix time) or later can have: a bound, for
    reading runs by the time they were made."""
    return _run_id(max(0, int(seconds * 1000)) << 80)


def _run_id(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "run_" + "".join(reversed(chars))


MAX_TOOL_NAME = 128  # MCP's tool names: 1 to 128 of letters, digits, `_`, `-` and `.`
TOOL_SLASH = "__"


def tool_name(task_id: str) -> str | None:
    """A task's name as an MCP tool: `/` written `__`; None for a task id that already holds
    `__` (the name could not be read back) or whose name would pass 128 characters."""
    if TOOL_SLASH in task_id:
        return None
    name = task_id.replace("/", TOOL_SLASH)
    return name if len(name) <= MAX_TOOL_NAME else None


def task_id_of(name: str) -> str:
    """The task id an MCP tool name stands for (the inverse of tool_name)."""
    return name.replace(TOOL_SLASH, "/")
