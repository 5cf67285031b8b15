"""`taskrun local` as a newcomer starts it: a separate process, on its own port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, USER_TASKS

# The installed `taskrun` command, as the README runs it.
TASKRUN = str(Path(sys.executable).parent / "taskrun")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = free_port()
    env = {**os.environ, "TASKRUN_API_KEY": "cli-key"}
    process = subprocess.Popen(
        [TASKRUN, "local", "--port", str(port), "--tasks", str(USER_TASKS)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("taskrun local did not answer within 60 s:\n" + (process.stdout.read() if process.stdout else ""))
    yield url, process
    if process.poll() is None:
        process.kill()


def test_taskrun_local_serves_runs_of_bundle_and_user_tasks(served: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = served
    headers = {"X-API-KEY": "cli-key"}
    greet = httpx.post(
        f"{url}/v1/runs",
        headers=headers,
        json={"task_id": "examples/greet", "arguments": {"name": "cli"}, "wait": True},
    )
    assert greet.status_code == 201, greet.text
    assert greet.json()["status"] == "succeeded", greet.text
    assert greet.json()["result"] == {"greeting": "hello cli!"}

    add = httpx.post(
        f"{url}/v1/runs?wait=true", headers=headers, json={"task_id": "team/add", "arguments": {"a": 2, "b": 3}}
    )
    assert add.json()["result"] == 5


def test_ctrl_c_stops_it_cleanly_and_each_request_was_logged_on_one_line(
    served: tuple[str, subprocess.Popen[str]],
) -> None:
    url, process = served
    httpx.get(f"{url}/v1/tasks", headers={"X-API-KEY": "cli-key"})
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    assert "GET /v1/tasks 200" in output
    assert "POST /v1/runs 201" in output
    assert any(line.startswith("tasks:") and "team/add" in line for line in output.splitlines())
    assert "Traceback" not in output


def start_with_tasks(directory: str) -> subprocess.CompletedProcess[str]:
    """`taskrun local --tasks DIR`, for a start that is expected to fail at once."""
    return subprocess.run(
        [TASKRUN, "local", "--port", str(free_port()), "--tasks", directory],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_an_unknown_tasks_directory_is_a_clear_error() -> None:
    result = start_with_tasks("/no/such/dir")
    assert result.returncode == 2
    assert "tasks directory /no/such/dir does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_task_module_that_does_not_import_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("from taskrun import task\n\nraise RuntimeError('a typo in my task module')\n")
    result = start_with_tasks(str(tmp_path))
    assert result.returncode == 1
    assert "could not start: RuntimeError: a typo in my task module" in result.stderr
    assert "Traceback" not in result.stderr
