"""The local stack's state folder across stops: what it keeps is for its owner's eyes only, and
a run cut off by a kill is neither lost nor run twice.

Each story starts `taskrun local` in a process of its own on a folder of its own (as
tests/test_cli.py does), kills or stops it, and starts it again on the same folder.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.test_cli import TASKRUN, kill, started
from tests.waiting import until

HEADERS = {"X-API-KEY": "cli-key"}
http = httpx.Client(timeout=30, headers=HEADERS)
CUT_OFF_RUNNING = "the local stack stopped while the run was running; it was not resumed"


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


def wait_until_ended(url: str, run_id: str, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while not (run := http.get(f"{url}/v1/runs/{run_id}", params={"wait": "true", "wait_timeout": 5}).json())[
        "is_done"
    ]:
        assert time.monotonic() < deadline, run
    return run


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


def kept_statuses(journal: Path, run_ids: set[str]) -> dict[str, str]:
    """Each run's status as the tables' journal last kept it."""
    statuses = {}
    for line in journal.read_text().splitlines():
        entry = json.loads(line)
        item = entry["item"] or {}
        if item.get("run_id", {}).get("S") in run_ids:
            statuses[item["run_id"]["S"]] = item["status"]["S"]
    return statuses


def test_runs_a_kill_cut_off_are_never_lost_and_never_run_twice(tmp_path: Path) -> None:
    data, marks, gate = tmp_path / "state", tmp_path / "marks", tmp_path / "gate"
    # Given 50 runs started without waiting, each noting its execution, then held at a gate
    # (the worker's sandboxes all busy, the rest pending in the stack's queue)
    with started("--data", str(data)) as (url, process):
        run_ids = []
        start = {"task_id": "control/tally", "arguments": {"marks": str(marks), "gate": str(gate)}}
        for _ in range(50):
            answer = http.post(f"{url}/v1/runs", json=start)
            assert answer.status_code == 201, answer.text
            run_ids.append(answer.json()["run_id"])
        until(lambda: marks.exists() and marks.read_text(), 60, "no run started within 60 s")  # a run's code began
        # When the stack is killed without warning
        kill(process)
    at_kill = kept_statuses(data / "tables.jsonl", set(run_ids))
    pending = {run_id for run_id, status in at_kill.items() if status == "pending"}
    running = {run_id for run_id, status in at_kill.items() if status == "running"}
    assert pending | running == set(run_ids), collections.Counter(at_kill.values())
    assert len(running) >= 1 and len(pending) >= 10
    gate.touch()

    # Then at the next start on the same folder every run ends
    with started("--data", str(data)) as (url, process):
        ended = {run_id: wait_until_ended(url, run_id) for run_id in run_ids}
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
    executions = collections.Counter(marks.read_text().split())
    by_status = collections.Counter(run["status"] for run in ended.values())
    succeeded = {run_id for run_id, run in ended.items() if run["status"] == "succeeded"}
    failed = {run_id for run_id, run in ended.items() if run["status"] == "failed"}
    twice = [run_id for run_id, times in executions.items() if times > 1]
    print(
        f"at the kill: {len(pending)} pending, {len(running)} running; after the restart: "
        f"{len(succeeded)} succeeded, {len(failed)} failed, {len(twice)} run twice, "
        f"{len(run_ids) - sum(by_status.values())} lost ({dict(by_status)})"
    )
    # each run's code ran at most once
    assert twice == []
    # every run pending at the kill was dispatched again, ran once and succeeded
    assert succeeded == pending
    assert all(executions[run_id] == 1 and ended[run_id]["result"] == run_id for run_id in pending)
    # every run running at the kill ended failed, saying why
    assert failed == running
    assert all(ended[run_id]["error"]["message"] == CUT_OFF_RUNNING for run_id in running)
    # and the start said what it did
    assert f"{len(pending)} runs pending at the last stop (never started) were dispatched again" in output
    assert f"{len(running)} runs cut off by the last stop were ended failed" in output


def test_runs_queued_for_a_slot_at_a_kill_run_after_the_next_start(tmp_path: Path) -> None:
    data, marks = tmp_path / "state", tmp_path / "marks"
    # Given a task that runs one at a time: one run holding its slot, two queued for it
    with started("--data", str(data)) as (url, process):
        run_ids = [
            http.post(
                f"{url}/v1/runs", json={"task_id": "control/single", "arguments": {"marks": str(marks), "nap": nap}}
            ).json()["run_id"]
            for nap in (8, 0.1, 0.1)  # the first holds the slot until the kill
        ]
        expected = ["running", "queued", "queued"]
        until(
            lambda: [http.get(f"{url}/v1/runs/{run_id}").json()["status"] for run_id in run_ids] == expected,
            60,
            "the first run did not start while the others waited",
        )
        # When the stack is killed without warning
        kill(process)
    # Then the next start on the same folder ends the run it cut off, and runs the queued ones
    with started("--data", str(data)) as (url, process):
        ended = [wait_until_ended(url, run_id) for run_id in run_ids]
    assert [run["status"] for run in ended] == ["failed", "succeeded", "succeeded"], ended
    assert ended[0]["error"]["message"] == CUT_OFF_RUNNING
