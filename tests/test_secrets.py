"""Secret parameters: the task gets them as they are; every answer, list, webhook, log,
error message and error echo shows them masked; a failed run's frames name files relative
to their task directory, never where they lie on the machine."""

from __future__ import annotations

import httpx

from taskrun.masking import MASK
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
