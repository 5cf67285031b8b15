"""A task edited while the local stack runs takes effect on the next run, without a restart."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from taskrun.local.stack import LocalStack
from tests.conftest import LIVE_TASK, NEEDS_DEPENDENCY
from tests.test_scopes import make_key
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


def test_an_edited_task_module_takes_effect_on_the_next_run(
    api: httpx.Client, live_tasks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a task as the stack loaded it
    assert run(api, "live/version")["result"] == "one"
    capsys.readouterr()
    try:
        # When its module is edited: a new parameter and a new result
        edited = LIVE_TASK.replace("def version() -> str:", "def version(suffix: str = '!') -> str:")
        (live_tasks / "live.py").write_text(edited.replace('return "one"', 'return "two" + suffix'))

        # Then once the stack has seen the change (a sandbox started meanwhile may read the new
        # file sooner, one kept warm from before not until then), the catalog shows it and the
        # next run runs the new code
        heard: list[str] = []

        def stack_saw_it() -> bool:
            heard.append(capsys.readouterr().err)
            return "the tasks changed; the next runs use them" in "".join(heard)

        until(stack_saw_it)
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
        assert json.dumps(problem).count("SyntaxError") == 1, problem  # the message said once, not twice
        # the catalog marks the task with its module's problem
        assert f"live.py line {broken_at}: SyntaxError" in api.get("/v1/tasks/live/version").json()["problem"]
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


def test_a_task_whose_module_never_imported_is_not_found_with_why_and_a_near_miss_is_offered(
    api: httpx.Client, anonymous: httpx.Client, live_tasks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a new module whose dependency is not installed, saved while the stack runs
    (live_tasks / "needsdep.py").write_text(NEEDS_DEPENDENCY)
    try:
        # Then a run of its task is a 404 that names the module's file, line and error
        def said() -> bool:
            return "requestz" in api.post("/v1/runs", json={"task_id": "live/needsdep"}).json()["detail"]

        until(said)
        answer = api.post("/v1/runs", json={"task_id": "live/needsdep"})
        assert answer.status_code == 404
        assert "needsdep.py line 2: ModuleNotFoundError: No module named 'requestz'" in answer.json()["detail"]
        assert "did you mean" not in answer.json()["detail"]
        # and the catalog lists the module that did not import, beside its tasks
        listed = api.get("/v1/tasks").json()
        (module,) = listed["unloaded_modules"]
        assert module == {
            "module": "needsdep",
            "file": f"{live_tasks.name}/needsdep.py",
            "line": 2,
            "error": "ModuleNotFoundError: No module named 'requestz'",
        }
        assert "live/needsdep" not in [task["task_id"] for task in listed["tasks"]]
        # A near miss is offered the closest ids, by run and by the catalog's own route
        typo = api.post("/v1/runs", json={"task_id": "live/verson"}).json()["detail"]
        assert "did you mean 'live/version'?" in typo, typo
        assert "did you mean 'team/add'" in api.get("/v1/tasks/team/ad").json()["detail"]
        # A key limited to some tasks is offered only those, and never told of the modules
        scoped = make_key(api, ["runs:read", "runs:write"], ["team/*"])
        hidden = anonymous.post("/v1/runs", headers=scoped, json={"task_id": "live/verson"}).json()
        assert hidden["status"] == 404 and "did you mean" not in hidden["detail"]
        assert "requestz" not in hidden["detail"]
        assert anonymous.get("/v1/tasks", headers=scoped).json()["unloaded_modules"] == []
        # The stack said the problem once: another change does not say it again
        heard: list[str] = []

        def heard_so_far() -> str:
            heard.append(capsys.readouterr().err)
            return "".join(heard)

        until(lambda: "the tasks changed" in heard_so_far().partition("needsdep.py")[2])  # that reload's end
        heard.clear()
        (live_tasks / "other.py").write_text("X = 1\n")
        until(lambda: "the tasks changed" in heard_so_far())
        assert "needsdep.py" not in heard_so_far(), heard_so_far()
        # and once it imports, says so
        (live_tasks / "needsdep.py").write_text(NEEDS_DEPENDENCY.replace("import requestz\n", ""))
        until(lambda: "the task module needsdep imports again" in heard_so_far())
    finally:
        (live_tasks / "needsdep.py").unlink()
        (live_tasks / "other.py").unlink(missing_ok=True)
    # Once the module is gone, so is its problem
    until(lambda: api.get("/v1/tasks").json()["unloaded_modules"] == [])


def test_a_module_removed_then_saved_again_broken_is_unloaded_not_served_as_it_was(
    api: httpx.Client, live_tasks: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module, marker = live_tasks / "comeback.py", live_tasks / "marker.py"
    broken = NEEDS_DEPENDENCY.replace("needsdep", "comeback")
    heard: list[str] = []

    def said(words: str) -> bool:
        heard.append(capsys.readouterr().err)
        return words in "".join(heard)

    try:
        # Given a module saved with an import that fails, then put right (its version kept)
        module.write_text(broken)
        until(lambda: said("comeback.py line 2"))
        module.write_text(broken.replace("import requestz\n", ""))
        until(lambda: said("the task module comeback imports again"))
        assert api.get("/v1/tasks/live/comeback").status_code == 200
        # When it is removed (a reload that sees it gone: the one that sees the marker, saved after)
        module.unlink()
        marker.write_text("def broken(:\n")
        until(lambda: said("marker.py line 1"))
        # and saved again, with the import that fails
        marker.unlink()
        module.write_text(broken)
        # Then it is a module that did not import, its task unknown, not the removed version served
        until(lambda: [m["module"] for m in api.get("/v1/tasks").json()["unloaded_modules"]] == ["comeback"])
        assert api.get("/v1/tasks/live/comeback").status_code == 404
    finally:
        module.unlink(missing_ok=True)
        marker.unlink(missing_ok=True)
    until(lambda: api.get("/v1/tasks").json()["unloaded_modules"] == [])


SLOW_FLOW_MODULE = """
import os
import time

from aws_durable_execution_sdk_python import DurableContext
from taskrun import flow

if "AWS_LAMBDA_FUNCTION_NAME" not in os.environ:  # slow outside a function: the stack's own look
    time.sleep(2)


@flow("live/slowflow", timeout=60)
def slowflow(context: DurableContext) -> str:
    return context.step(lambda step: "done", name="only")
"""


def test_a_code_first_flow_started_the_moment_it_is_listed_runs_on_a_version_that_has_it(
    api: httpx.Client, live_tasks: Path
) -> None:
    # Given a new code-first flow's module that the stack's own look at the files is slow to
    # import: new sandboxes list the flow before the stack has published the flows' next version
    module = live_tasks / "slow_flow.py"
    module.write_text(SLOW_FLOW_MODULE)
    try:
        until(lambda: api.get("/v1/tasks/live/slowflow").status_code == 200, 30, every=0.02)
        # When a run of it starts at once
        body = {"task_id": "live/slowflow", "arguments": {}, "wait": True, "wait_timeout": 20}
        run = api.post("/v1/runs", json=body).json()
        # Then it runs on a version that has it (its start waited for that version)
        assert run["status"] == "succeeded" and run["result"] == "done", run
    finally:
        module.unlink()
    until(lambda: api.get("/v1/tasks/live/slowflow").status_code == 404, 30)


CODE_FLOW_MODULE = """
from aws_durable_execution_sdk_python import DurableContext
from taskrun import flow


@flow("live/edited", timeout=120, description="VERSION")
def edited(context: DurableContext) -> dict:
    before = context.step(lambda step: "VERSION", name="before")
    answer = context.wait_for_callback(lambda callback_id, ctx: None, name="go")
    after = context.step(lambda step: "VERSION", name="after")
    return {"before": before, "after": after, "answer": answer}
"""


def test_a_code_first_flow_waiting_when_its_module_is_edited_finishes_on_the_code_it_started_with(
    api: httpx.Client, live_tasks: Path
) -> None:
    module = live_tasks / "edited_flow.py"
    module.write_text(CODE_FLOW_MODULE.replace("VERSION", "one"))
    try:
        until(lambda: api.get("/v1/tasks/live/edited").json().get("description") == "one")
        # Given a run of the flow waiting for its callback
        waiting = api.post("/v1/runs", json={"task_id": "live/edited", "arguments": {}}).json()
        (callback,) = until(lambda: api.get(f"/v1/runs/{waiting['run_id']}/callbacks").json()["callbacks"], 20)
        # When the flow's module is edited (the catalog shows the new version)
        module.write_text(CODE_FLOW_MODULE.replace("VERSION", "two"))
        until(lambda: api.get("/v1/tasks/live/edited").json().get("description") == "two")
        # and the waiting run goes on
        url = f"/v1/runs/{waiting['run_id']}/callbacks/{callback['callback_id']}"
        assert api.post(url, json={"output": "go"}).status_code == 200
        ended = api.get(f"/v1/runs/{waiting['run_id']}", params={"wait": "true", "wait_timeout": 20}).json()
        # Then it finished on the code it started with
        assert ended["status"] == "succeeded", ended
        assert ended["result"] == {"before": "one", "after": "one", "answer": '"go"'}
        # and a run started now runs the new code
        fresh = api.post("/v1/runs", json={"task_id": "live/edited", "arguments": {}}).json()
        (callback,) = until(lambda: api.get(f"/v1/runs/{fresh['run_id']}/callbacks").json()["callbacks"], 20)
        api.post(f"/v1/runs/{fresh['run_id']}/callbacks/{callback['callback_id']}", json={"output": "go"})
        done = api.get(f"/v1/runs/{fresh['run_id']}", params={"wait": "true", "wait_timeout": 20}).json()
        assert done["result"] == {"before": "two", "after": "two", "answer": '"go"'}, done
    finally:
        module.unlink()


def test_a_code_first_flow_starts_on_the_versions_as_they_are_when_the_reload_before_it_fails(
    api: httpx.Client, stack: LocalStack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the look at the task files before an execution starts fails
    def broken() -> None:
        raise RuntimeError("the state folder went away")

    monkeypatch.setattr(stack.emulator.durable, "settle", broken)
    # Then a run of a code-first flow still starts, on the versions published, and succeeds
    body = {"task_id": "examples/order_code", "arguments": {"order_id": "R-1", "quantity": 1}, "wait": True}
    run = api.post("/v1/runs", json=body).json()
    assert run["status"] == "succeeded", run
    # and the stack said why it did not reload
    assert "the tasks could not be reloaded: the state folder went away" in capsys.readouterr().err
