"""The local stack's state folder across stops: what it keeps is for its owner's eyes only.

Each story starts `taskrun local` in a process of its own on a folder of its own (as
tests/test_cli.py does), kills or stops it, and starts it again on the same folder.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_cli import TASKRUN, started

HEADERS = {"X-API-KEY": "cli-key"}
http = httpx.Client(timeout=30, headers=HEADERS)


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most machines have (0022): what is not made owner-only comes out readable by all."""
    before = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(before)


def open_to_others(folder: Path) -> list[str]:
    """Everything in the folder (itself included) with a group or other bit, with its mode."""
    found = []
    for path in [folder, *folder.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if not path.is_symlink() and mode & 0o077:
            found.append(f"{path.relative_to(folder.parent)} {mode:04o}")
    return found


def test_everything_the_state_folder_holds_is_for_its_owner_only(tmp_path: Path, usual_umask: None) -> None:
    data = tmp_path / "state"
    # Given a secret set with the CLI before the stack ever started (the folder does not exist yet)
    secret = subprocess.run(
        [TASKRUN, "secrets", "set", "test-stripe", "--dir", str(data / "secrets"), "--value", "sk_test_owner_only"],
        capture_output=True,
        text=True,
    )
    assert secret.returncode == 0, secret.stderr
    # When a stack keeping its state there (its key and webhook secret made by it) runs tasks
    # with arguments, results, logs and the secret, and a key is made over the API
    with started("--data", str(data), TASKRUN_API_KEY="", TASKRUN_WEBHOOK_SECRET="") as (url, process):
        http = httpx.Client(timeout=30, headers={"X-API-KEY": (data / "api-key").read_text().strip()})
        added = http.post(f"{url}/v1/runs?wait=true", json={"task_id": "team/add", "arguments": {"a": 4}}).json()
        assert added["status"] == "succeeded" and added["result"] == 4
        chatty = http.post(f"{url}/v1/runs?wait=true", json={"task_id": "noisy/chatty", "arguments": {"lines": 3}})
        assert chatty.json()["status"] == "succeeded"
        assert "000002" in http.get(f"{url}/v1/runs/{chatty.json()['run_id']}/logs").text
        charged = http.post(f"{url}/v1/runs?wait=true", json={"task_id": "control/charge", "arguments": {"amount": 5}})
        assert charged.json()["status"] == "succeeded", charged.text
        key = http.post(f"{url}/v1/keys", json={"name": "kept"})
        assert key.status_code == 201, key.text
        # Then, while it runs, nothing there is open to the group or others
        assert {path.name for path in data.iterdir()} >= {"tables.jsonl", "api-key", "webhook-secret", "secrets"}
        assert open_to_others(data) == []
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=10)
    # nor after a stop and a start again (the journal rewritten at the start)
    with started("--data", str(data), TASKRUN_API_KEY="", TASKRUN_WEBHOOK_SECRET="") as (url, _):
        assert http.get(f"{url}/v1/runs/{added['run_id']}").json()["result"] == 4
        assert open_to_others(data) == []


def test_a_state_folder_open_to_others_is_narrowed_at_the_start_saying_so(tmp_path: Path, usual_umask: None) -> None:
    # Given a state folder made before with the usual modes (0755 folders, 0644 files)
    data = tmp_path / "state"
    (data / "secrets").mkdir(parents=True)
    (data / "api-key").write_text("tr_kept_by_an_older_version\n")
    (data / "secrets" / "test-stripe").write_text("sk_test_old")
    (data / "notes.txt").write_text("a file the owner put there")
    for folder in (data, data / "secrets"):
        folder.chmod(0o755)
    for file in (data / "api-key", data / "secrets" / "test-stripe", data / "notes.txt"):
        file.chmod(0o644)
    # When the stack starts on it
    with started("--data", str(data)) as (url, process):
        # Then every folder and file there is narrowed to its owner, and still works
        assert open_to_others(data) == []
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert stat.S_IMODE((data / "notes.txt").stat().st_mode) == 0o600
        assert http.get(f"{url}/v1/tasks").status_code == 200
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    # And the start said so, once, naming what it narrowed
    lines = [line for line in output.splitlines() if "open to others" in line]
    assert lines == [
        f"taskrun local: the state folder {data} was open to others: "
        "narrowed to owner only 2 folders (0700) and 3 files (0600)"
    ], output
