"""A task edited while the local stack runs takes effect on the next run, without a restart."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from tests.conftest import LIVE_TASK

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


def eventually(check: object, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the change did not take effect in time"
        time.sleep(0.2)


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
        eventually(lambda: "suffix" in api.get("/v1/tasks/live/version").json()["parameters"]["properties"])
        assert run(api, "live/version", {"suffix": "?"})["result"] == "two?"
    finally:
        (live_tasks / "live.py").write_text(LIVE_TASK)
    eventually(lambda: run(api, "live/version").get("result") == "one")


def test_a_new_flow_and_an_edited_flow_file_take_effect(api: httpx.Client, live_tasks: Path) -> None:
    # Given a flow added to the tasks directory while the stack runs
    (live_tasks / "say.asl.json").write_text(json.dumps(FLOW).replace("WORD", "hello"))
    (live_tasks / "say.py").write_text(FLOW_MODULE)
    try:
        eventually(lambda: api.get("/v1/tasks/live/say").status_code == 200)
        eventually(lambda: run(api, "live/say").get("result") == {"said": "hello"})

        # When its ASL file is edited, then the next run follows the new definition
        (live_tasks / "say.asl.json").write_text(json.dumps(FLOW).replace("WORD", "goodbye"))
        eventually(lambda: run(api, "live/say").get("result") == {"said": "goodbye"})
    finally:
        (live_tasks / "say.py").unlink()
        (live_tasks / "say.asl.json").unlink()
