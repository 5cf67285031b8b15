"""Secrets for tasks, through the local stack: set with `taskrun secrets`, read by a task
with RunContext.secret, never shown in the run, its list, its logs or its error."""

from __future__ import annotations

from pathlib import Path

import httpx
from typer.testing import CliRunner

from taskrun.cli.commands import app
from taskrun.local.stack import LocalStack
from tests.test_run_control import marks_in, started, waited

VALUE = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"


def taskrun(*args: str, stdin: str | None = None) -> tuple[int, str]:
    ran = CliRunner().invoke(app, list(args), input=stdin, prog_name="taskrun")
    return ran.exit_code, ran.stdout + ran.stderr


def test_a_task_reads_its_secret_and_nothing_shows_it(api: httpx.Client, stack: LocalStack) -> None:
    folder = str(stack.secrets_path())
    # Given the secret, set from stdin with the CLI into the stack's secrets
    assert taskrun("secrets", "set", "test-stripe", "--dir", folder, stdin=VALUE + "\n") == (0, "test-stripe set\n")
    code, listed = taskrun("secrets", "list", "--dir", folder)
    assert code == 0 and "test-stripe" in listed.splitlines() and VALUE not in listed
    # When a task that declares it runs
    run = api.post("/v1/runs?wait=true", json={"task_id": "control/charge", "arguments": {"amount": 5}}).json()
    # Then it read it, and neither the run, the list nor the logs hold it
    assert run["status"] == "succeeded" and run["result"] == {"amount": 5, "key_length": len(VALUE)}
    listed_runs = api.get("/v1/runs", params={"task_id": "control/charge"}).text
    logs = api.get(f"/v1/runs/{run['run_id']}/logs").json()["text"]
    assert "charging 5 with ********" in logs
    assert VALUE not in api.get(f"/v1/runs/{run['run_id']}").text + listed_runs + logs
    # And an error that quotes it shows it masked
    body = {"task_id": "control/charge", "arguments": {"amount": 1, "leak": True}}
    failed = api.post("/v1/runs?wait=true", json=body).json()
    assert failed["status"] == "failed" and failed["error"]["message"] == "the key ******** was refused"
    assert VALUE not in api.get(f"/v1/runs/{failed['run_id']}/logs").text
    # And once deleted, runs of the task fail before the task starts
    assert taskrun("secrets", "delete", "test-stripe", "--dir", folder) == (0, "test-stripe deleted\n")
    assert taskrun("secrets", "delete", "test-stripe", "--dir", folder)[0] == 1
    gone = api.post("/v1/runs?wait=true", json={"task_id": "control/charge", "arguments": {"amount": 1}}).json()
    assert gone["status"] == "failed" and gone["error"]["exception_type"] == "SecretNotFound"


def test_a_run_whose_secret_is_not_set_fails_before_its_code_starts(api: httpx.Client, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    run = waited(api, started(api, {"task_id": "control/nosy", "arguments": {"marks": str(marks)}})["run_id"])
    assert run["status"] == "failed" and run["error"]["type"] == "execution_error"
    assert run["error"]["exception_type"] == "SecretNotFound"
    assert run["error"]["message"] == "the task's secret 'test-absent' is not set (taskrun secrets set test-absent)"
    assert marks_in(marks) == 0


def test_bad_secret_names_and_values_are_refused(stack: LocalStack) -> None:
    folder = str(stack.secrets_path())
    assert taskrun("secrets", "set", "../escape", "--dir", folder, "--value", "x")[0] == 2
    assert taskrun("secrets", "set", "empty", "--dir", folder, "--value", "")[0] == 2
    assert taskrun("secrets", "set", "huge", "--dir", folder, "--value", "x" * 5000)[0] == 2
    assert not (Path(folder).parent / "escape").exists()


def test_the_stack_s_ssm_secrets_are_set_read_listed_and_deleted(stack: LocalStack) -> None:
    """What `taskrun secrets --stack` and a deployed worker use: SecureStrings under the prefix."""
    from taskrun.catalog.secrets import ParameterSecrets

    secrets = ParameterSecrets("/taskrun-test/secrets/")
    assert secrets.get("stripe") is None  # not set: None, so the run fails with SecretNotFound
    secrets.put("stripe", VALUE)
    assert secrets.get("stripe") == VALUE and secrets.names() == ["stripe"]
    assert secrets.delete("stripe") is True and secrets.delete("stripe") is False
    assert secrets.names() == []
