"""A task edited while the local stack runs takes effect on the next run, without a restart."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.conftest import LIVE_TASK
from tests.waiting import until

FLOW = {
    "StartAt": "Say",
    "States": {"Say": {"Type": "Pass", "Result": {"said": "WORD"}, "End": True}},
}
FLOW_MODULE = """
from pydantic import BaseModel

from taskrun import flow


class SayArgs(BaseModel):
    \"\"\"Say one word.\"\"\"


flow("live/say", definition="say.asl.json", parameters=SayArgs)
"""


def run(api: httpx.Client, task_id: str, arguments: dict | None = None) -> dict:
    return api.post("/v1/runs", json={"task_id": task_id, "arguments": arguments or {}, "wait": True}).json()


def test_an_edited_task_module_takes_effect_on_the_next_run(api: httpx.Client, live_tasks: Path) -> None:
    # Given a task as the stack loaded it
    assert run(api, "live/version")["result"] == "one"
    try:
        # When its module is edited: a new parameter and a new result
        edited = LIVE_TASK.replace("def version() -> str:", "def version(suffix: str = '!') -> str:")
        (live_tasks / "live.py").write_text(edited.replace('return "one"', 'return "two" + suffix'))

        # Then the catalog shows the change, and the next run runs the new code
        until(lambda: "suffix" in api.get("/v1/tasks/live/version").json()["parameters"]["properties"])
        answer = run(api, "live/version", {"suffix": "?"})
        assert answer.get("result") == "two?", answer
    finally:
        (live_tasks / "live.py").write_text(LIVE_TASK)
    until(lambda: run(api, "live/version").get("result") == "one")


def test_a_new_flow_and_an_edited_flow_file_take_effect(api: httpx.Client, live_tasks: Path) -> None:
    # Given a flow added to the tasks directory while the stack runs
    (live_tasks / "say.asl.json").write_text(json.dumps(FLOW).replace("WORD", "hello"))
    (live_tasks / "say.py").write_text(FLOW_MODULE)
    try:
        until(lambda: api.get("/v1/tasks/live/say").status_code == 200)
        until(lambda: run(api, "live/say").get("result") == {"said": "hello"})

        # When its ASL file is edited, then the next run follows the new definition
        (live_tasks / "say.asl.json").write_text(json.dumps(FLOW).replace("WORD", "goodbye"))
        until(lambda: run(api, "live/say").get("result") == {"said": "goodbye"})
    finally:
        (live_tasks / "say.py").unlink()
        (live_tasks / "say.asl.json").unlink()


def test_a_module_edited_into_a_syntax_error_keeps_its_last_version_and_refuses_its_runs(
    api: httpx.Client, live_tasks: Path
) -> None:
    # Given a task module as the stack loaded it
    assert run(api, "live/version")["result"] == "one"
    try:
        # When it is saved with a syntax error on its fifth line
        lines = LIVE_TASK.splitlines()
        broken_at = 5
        lines.insert(broken_at - 1, "def oops(:")
        (live_tasks / "live.py").write_text("\n".join(lines) + "\n")

        # Then its task answers a problem naming the file and line, never a 500
        def refused() -> bool:
            return api.post("/v1/runs", json={"task_id": "live/version", "arguments": {}}).status_code == 422

        until(refused)
        problem = api.post("/v1/runs", json={"task_id": "live/version", "arguments": {}}).json()
        assert f"live.py line {broken_at}: SyntaxError" in problem["detail"]
        assert problem["errors"][0]["location"] == "body.task_id"
        # and it stays in the catalog as it last imported, while every other task runs on
        assert api.get("/v1/tasks/live/version").status_code == 200
        assert run(api, "team/add", {"a": 1, "b": 2})["result"] == 3
        assert api.post("/v1/runs/batch", json={"runs": [{"task_id": "team/add", "arguments": {"a": 1}}]}).is_success
    finally:
        (live_tasks / "live.py").write_text(LIVE_TASK)
    # And once the file imports again, its runs start again
    until(lambda: run(api, "live/version").get("result") == "one")


def test_a_module_that_raises_as_it_imports_is_named_with_its_line(api: httpx.Client, live_tasks: Path) -> None:
    (live_tasks / "live.py").write_text(LIVE_TASK + "\nraise RuntimeError('no config here')\n")
    try:
        until(lambda: api.post("/v1/runs", json={"task_id": "live/version"}).status_code == 422)
        detail = api.post("/v1/runs", json={"task_id": "live/version"}).json()["detail"]
        line = len(LIVE_TASK.splitlines()) + 2
        assert f"live.py line {line}: RuntimeError: no config here" in detail
        assert run(api, "team/add", {"a": 2, "b": 2})["result"] == 4
    finally:
        (live_tasks / "live.py").write_text(LIVE_TASK)
    until(lambda: run(api, "live/version").get("result") == "one")
