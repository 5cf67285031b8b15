"""Secret parameters: the task gets them as they are; every answer, list, webhook, log,
error message and error echo shows them masked; a failed run's frames name files relative
to their task directory, never where they lie on the machine."""

from __future__ import annotations

from pathlib import Path

import httpx

from taskrun.catalog.masking import MASK
from taskrun.local.stack import LocalStack
from tests.conftest import USER_TASKS
from tests.receiver import Receiver

PASSWORD = "hunter2-correct-horse"
TOKEN = "tok-4f9a8b7c6d5e"


def login(api: httpx.Client, **more: object) -> httpx.Response:
    arguments = {"user": "ada", "password": PASSWORD, "token": TOKEN, **more}
    return api.post("/v1/runs", json={"task_id": "secret/login", "arguments": arguments, "wait": True})


def test_a_secret_reaches_the_task_and_shows_nowhere(api: httpx.Client, receiver: Receiver) -> None:
    # When a run is started with a password and a token, with a webhook
    started = api.post(
        "/v1/runs",
        json={
            "task_id": "secret/login",
            "arguments": {"user": "ada", "password": PASSWORD, "token": TOKEN},
            "wait": True,
            "webhook_url": receiver.url,
        },
    )
    assert started.status_code == 201, started.text
    run = started.json()
    # Then the task had them as they are (the password as text, the token as a SecretStr)
    assert run["status"] == "succeeded", run
    assert run["result"] == {"user": "ada", "password_length": len(PASSWORD), "token": "SecretStr"}
    # but the answer, the run read again and the webhook show them masked
    assert run["arguments"] == {"user": "ada", "password": MASK, "token": MASK, "fail": False}
    fetched = api.get(f"/v1/runs/{run['run_id']}")
    assert fetched.json()["arguments"]["password"] == MASK
    receiver.wait_for(lambda: bool(receiver.of_run(run["run_id"])))
    (delivered,) = receiver.of_run(run["run_id"])
    assert receiver.verify(delivered)["data"]["arguments"]["password"] == MASK
    for text in (started.text, fetched.text, delivered.body.decode()):
        assert PASSWORD not in text and TOKEN not in text
    # and what the task printed and logged has them masked too
    logs = api.get(f"/v1/runs/{run['run_id']}/logs").json()["text"]
    assert f"logging in ada with {MASK}" in logs and f"token: {MASK}" in logs
    assert PASSWORD not in logs and TOKEN not in logs


def test_a_failed_run_masks_its_secrets_and_names_files_by_their_task_directory(api: httpx.Client) -> None:
    run = login(api, fail=True).json()
    assert run["status"] == "failed"
    error = run["error"]
    assert error["message"] == f"the password {MASK} was refused"
    files = [frame["file"] for frame in error["frames"]]
    assert files[-1] == f"{USER_TASKS.name}/secretive.py", files
    assert not any(file.startswith("/") for file in files), files
    logs = api.get(f"/v1/runs/{run['run_id']}/logs").json()["text"]
    assert PASSWORD not in logs and str(USER_TASKS) not in logs
    assert f'File "{USER_TASKS.name}/secretive.py"' in logs


def test_a_secret_of_the_wrong_type_is_not_echoed_in_the_422(api: httpx.Client) -> None:
    answer = api.post(
        "/v1/runs", json={"task_id": "secret/login", "arguments": {"user": "ada", "password": ["hunter2-in-a-list"]}}
    )
    assert answer.status_code == 422
    (error,) = answer.json()["errors"]
    assert error["location"] == "body.arguments.password" and error["value"] == MASK
    assert "hunter2" not in answer.text


def test_the_catalog_says_which_parameters_are_secret(api: httpx.Client) -> None:
    properties = api.get("/v1/tasks/secret/login").json()["parameters"]["properties"]
    assert properties["password"]["writeOnly"] is True and properties["password"]["format"] == "password"
    assert "writeOnly" not in properties["user"]


def test_runs_are_read_and_cancelled_without_the_tasks_code_unless_their_arguments_hold_secrets(
    api: httpx.Client, stack: LocalStack, tmp_path: Path
) -> None:
    # Given the functions that read and cancel runs, fresh, marking each import of the task modules
    marks = tmp_path / "imports"
    functions = ["GetRunFunction", "CancelRunFunction"]
    stack.emulator.runtime.update_environment(functions, {"TASKRUN_TEST_IMPORT_MARKS": str(marks)})
    try:
        # When a run with no secret is read and cancelled (put off, so it is still queued)
        plain = api.post("/v1/runs", json={"task_id": "examples/greet", "arguments": {"name": "x"}, "delay": 300})
        assert plain.status_code == 201, plain.text
        run_id = plain.json()["run_id"]
        assert api.get(f"/v1/runs/{run_id}").json()["arguments"]["name"] == "x"
        assert api.post(f"/v1/runs/{run_id}/cancel").json()["status"] == "cancelled"
        # Then neither function imported the tasks' code
        assert not marks.exists()
        # When a run whose arguments hold secrets is read and cancelled
        arguments = {"user": "ada", "password": PASSWORD, "token": TOKEN}
        secret = api.post("/v1/runs", json={"task_id": "secret/login", "arguments": arguments, "delay": 300})
        run_id = secret.json()["run_id"]
        read = api.get(f"/v1/runs/{run_id}").json()
        cancelled = api.post(f"/v1/runs/{run_id}/cancel").json()
        # Then each answer is masked, by the task's parameters, which each function imported once
        masked = {"user": "ada", "password": MASK, "token": MASK, "fail": False}
        assert read["arguments"] == masked and cancelled["arguments"] == masked
        assert cancelled["status"] == "cancelled"
        assert marks.read_text().splitlines() == functions
    finally:
        stack.emulator.runtime.update_environment(functions, {"TASKRUN_TEST_IMPORT_MARKS": None})
