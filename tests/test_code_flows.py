"""Code-first flows: plain Python on Lambda durable functions, run through the API on the
local stack's durable execution engine (the official one for local runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx


def ran(api: httpx.Client, body: dict[str, Any], seconds: int = 25) -> dict[str, Any]:
    answer = api.post("/v1/runs", params={"wait": "true", "wait_timeout": seconds}, json=body)
    assert answer.status_code in (200, 201), answer.text
    run: dict[str, Any] = answer.json()
    return run


def test_a_code_first_flow_runs_its_steps_and_ends_with_its_return_value(api: httpx.Client, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    # Given a code-first flow of two steps with a wait between them
    shown = api.get("/v1/tasks/durable/greet").json()
    assert shown["task_type"] == "flow"
    assert shown["parameters"]["required"] == ["name", "marks"]
    # When it is run
    run = ran(api, {"task_id": "durable/greet", "arguments": {"name": "Ada", "marks": str(marks), "pause": 1}})
    # Then it ends with what the function returned, each step run once
    assert run["status"] == "succeeded", run
    assert run["task_type"] == "flow"
    assert run["result"] == {"greeting": "hello Ada, goodbye"}
    assert marks.read_text().split() == ["hello", "goodbye"]
