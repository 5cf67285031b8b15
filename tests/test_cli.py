"""`taskrun local` as a newcomer starts it: a separate process, on its own port."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, USER_TASKS
from tests.waiting import until

# The installed `taskrun` command, as the README runs it.
TASKRUN = str(Path(sys.executable).parent / "taskrun")
# A stack just started on a busy machine may take some seconds over its first runs.
http = httpx.Client(timeout=30)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def started(*options: str, **settings: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """`taskrun local` in its own process on a free port, answering health; killed on the way out."""
    port = free_port()
    env = {**os.environ, "TASKRUN_API_KEY": "cli-key", **settings}
    process = subprocess.Popen(
        [TASKRUN, "local", "--port", str(port), "--tasks", str(USER_TASKS), *options],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"

    def answering() -> bool:  # not up yet, or not answering 200 yet (a throttled start): asked again shortly
        try:
            return httpx.get(f"{url}/v1/health", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        until(answering, 60, every=0.2)
    except AssertionError:
        process.kill()
        pytest.fail("taskrun local did not answer within 60 s:\n" + (process.stdout.read() if process.stdout else ""))
    try:
        yield url, process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)


def running(url: str, run_id: str) -> None:
    """Wait until the run is running (its worker's sandbox may take a while to start on a busy machine)."""
    headers = {"X-API-KEY": "cli-key"}
    until(lambda: http.get(f"{url}/v1/runs/{run_id}", headers=headers).json()["status"] == "running", 60, every=0.2)


def descendants(pid: int) -> set[int]:
    """The processes `pid` started, and theirs, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            child, parent = int(entry.name), int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(child)
    found, queue = set(), [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.add(child)
            queue.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill(process: subprocess.Popen[str]) -> str:
    """Kill `taskrun local` without warning, as a power cut would, and see every process it
    started go with it (its sandboxes, and their tasks' children), as a Lambda sandbox's do;
    what it printed."""
    started = descendants(process.pid)
    process.kill()
    process.wait(30)
    until(lambda: not [pid for pid in started if alive(pid)], 20, "processes of a killed stack lived on")
    output, _ = process.communicate(timeout=30)
    return output


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    with started("--ephemeral", TASKRUN_WEBHOOK_SECRET="") as server:  # none chosen: one is made
        yield server


def test_taskrun_local_serves_runs_of_bundle_and_user_tasks(served: tuple[str, subprocess.Popen[str]]) -> None:
    url, _ = served
    headers = {"X-API-KEY": "cli-key"}
    greet = http.post(
        f"{url}/v1/runs",
        headers=headers,
        json={"task_id": "examples/greet", "arguments": {"name": "cli"}, "wait": True},
    )
    assert greet.status_code == 201, greet.text
    assert greet.json()["status"] == "succeeded", greet.text
    assert greet.json()["result"] == {"greeting": "hello cli!"}

    add = http.post(
        f"{url}/v1/runs?wait=true", headers=headers, json={"task_id": "team/add", "arguments": {"a": 2, "b": 3}}
    )
    assert add.json()["result"] == 5


def test_ctrl_c_stops_it_cleanly_and_each_request_was_logged_on_one_line(
    served: tuple[str, subprocess.Popen[str]],
) -> None:
    url, process = served
    http.get(f"{url}/v1/tasks", headers={"X-API-KEY": "cli-key"})
    # Given a run going when Ctrl-C comes
    going = http.post(
        f"{url}/v1/runs",
        headers={"X-API-KEY": "cli-key"},
        json={"task_id": "examples/sleep", "arguments": {"seconds": 60}},
    ).json()
    running(url, going["run_id"])
    process.send_signal(signal.SIGINT)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 0
    # one calm line says what became of it, and no sandbox's ending is shown
    lines = output.splitlines()
    stopping = [line for line in lines if line.startswith("taskrun local: stopping")]
    assert stopping == [
        "taskrun local: stopping with 1 run under way; the stack keeps nothing (--ephemeral), so it ends with it"
    ], output
    assert lines[-1] == stopping[0], output
    assert "Runtime.ExitError" not in output and "async invoke failed" not in output
    assert "GET /v1/tasks 200" in output
    assert re.search(r"POST /v1/runs\S* 201 ", output)
    assert any(line.startswith("tasks:") and "team/add" in line for line in output.splitlines())
    assert "Traceback" not in output
    # the key was chosen (TASKRUN_API_KEY), so it is not printed; the signing secret was made, so it is
    assert "API key (set TASKRUN_API_KEY" not in output
    assert "webhook signing secret (set TASKRUN_WEBHOOK_SECRET to choose one): whsec_" in output
    assert f"console: {url}/console · MCP: {url}/mcp" in output  # where a person and an agent go next


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


def test_a_task_module_that_does_not_import_is_named_at_start_and_by_a_run_of_its_task(tmp_path: Path) -> None:
    # Given a tasks directory with a module that raises as it imports, beside one that imports
    (tmp_path / "broken.py").write_text(
        "from taskrun import task\n\n\n@task('mine/broken')\ndef broken() -> str:\n    return 'x'\n\n"
        "raise RuntimeError('a typo in my task module')\n"
    )
    (tmp_path / "fine.py").write_text(
        "from taskrun import task\n\n\n@task('mine/fine')\ndef fine() -> str:\n    return 'ok'\n"
    )
    # The stack starts all the same, and its first lines name the module's file, line and error
    with started("--tasks", str(tmp_path), "--ephemeral") as (url, process):
        env = {**os.environ, "TASKRUN_URL": url, "TASKRUN_API_KEY": "cli-key"}
        fine = subprocess.run([TASKRUN, "run", "mine/fine"], env=env, capture_output=True, text=True, timeout=60)
        broken = subprocess.run([TASKRUN, "run", "mine/broken"], env=env, capture_output=True, text=True, timeout=60)
        process.kill()
        output = process.communicate(timeout=30)[0]
    said = f"{tmp_path.name}/broken.py line 8: RuntimeError: a typo in my task module"
    assert f"taskrun local: {said}; its tasks are not known until it imports" in output
    assert "Traceback" not in output
    assert fine.returncode == 0 and fine.stdout.strip() == "ok", fine.stdout + fine.stderr
    # and a run of its task is not found, with the reason in one line
    assert broken.returncode != 0
    assert broken.stderr.startswith("taskrun: 404 Task not found: no task named 'mine/broken'"), broken.stderr
    assert said in broken.stderr and len(broken.stderr.strip().splitlines()) == 1


def test_runs_survive_a_kill_and_runs_it_cut_off_end_failed_at_the_next_start(tmp_path: Path) -> None:
    data = tmp_path / "state"
    headers = {"X-API-KEY": "cli-key"}
    # Given a stack keeping its state in a folder, with a run that ended and one that was running
    with started("--data", str(data)) as (url, process):
        done = http.post(
            f"{url}/v1/runs?wait=true", headers=headers, json={"task_id": "team/add", "arguments": {"a": 4}}
        ).json()
        assert done["status"] == "succeeded"
        cut = http.post(
            f"{url}/v1/runs?wait=true&wait_timeout=1",
            headers=headers,
            json={"task_id": "examples/sleep", "arguments": {"seconds": 60}},
        ).json()
        assert cut["status"] == "running"
        made = time.monotonic()
        # and two schedules: one a few seconds ahead (it will be missed; ahead of the schedules
        # function's first start on a busy machine), one weekly
        soon = (datetime.now(UTC) + timedelta(seconds=9)).strftime("%Y-%m-%dT%H:%M:%S")
        answer = http.post(
            f"{url}/v1/schedules",
            headers=headers,
            json={"task_id": "team/add", "arguments": {"a": 1}, "expression": f"at({soon})"},
        )
        assert answer.status_code == 201, answer.text
        missed = answer.json()
        weekly = http.post(
            f"{url}/v1/schedules",
            headers=headers,
            json={
                "task_id": "team/add",
                "arguments": {"a": 2},
                "expression": "cron(0 6 ? * MON *)",
                "timezone": "Asia/Tokyo",
            },
        ).json()
        # and a key made over the API (its usage-plan key lives in the emulator, which keeps none)
        other = http.post(f"{url}/v1/keys", headers=headers, json={"name": "kept"}).json()
        # When it is killed without warning
        kill(process)
    # (and its journal is as a version before the `active` index kept it)
    journal = data / "tables.jsonl"
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert any(line["item"] and "active" in line["item"] for line in lines)
    for line in lines:
        if line["item"]:
            line["item"].pop("active", None)
    journal.write_text("".join(json.dumps(line) + "\n" for line in lines))
    time.sleep(max(0.0, 10 - (time.monotonic() - made)))  # the one-off's time passes while it is stopped

    # Then the next start on the same folder has both runs: the ended one as it was,
    # the cut-off one ended failed, saying why
    with started("--data", str(data)) as (url, process):
        kept = http.get(f"{url}/v1/runs/{done['run_id']}", headers=headers).json()
        assert kept["status"] == "succeeded" and kept["result"] == 4
        ended = http.get(f"{url}/v1/runs/{cut['run_id']}", headers=headers).json()
        assert ended["status"] == "failed"
        assert ended["error"]["message"] == "the local stack stopped while the run was running; it was not resumed"
        listed = http.get(f"{url}/v1/runs", headers=headers, params={"limit": 100}).json()["runs"]
        assert {done["run_id"], cut["run_id"]} <= {run["run_id"] for run in listed}
        # the key made before works, and revoking it still refuses it
        assert http.get(f"{url}/v1/tasks", headers={"X-API-KEY": other["key"]}).status_code == 200
        assert http.delete(f"{url}/v1/keys/{other['key_id']}", headers=headers).status_code == 200
        assert http.get(f"{url}/v1/tasks", headers={"X-API-KEY": other["key"]}).status_code in (401, 403)
        # the schedules are kept; the one-off missed while stopped fires once at the start
        kept_weekly = http.get(f"{url}/v1/schedules/{weekly['schedule_id']}", headers=headers).json()
        assert kept_weekly["state"] == "scheduled" and kept_weekly["next_run_at"] == weekly["next_run_at"]
        deadline = time.monotonic() + 10
        while (shown := http.get(f"{url}/v1/schedules/{missed['schedule_id']}", headers=headers).json())[
            "state"
        ] != "done":
            assert time.monotonic() < deadline, shown
            time.sleep(0.2)
        fired = http.get(f"{url}/v1/runs", headers=headers, params={"schedule_id": missed["schedule_id"]}).json()
        assert [run["run_id"] for run in fired["runs"]] == [shown["last_run"]["run_id"]]
        ended = f"{url}/v1/runs/{shown['last_run']['run_id']}?wait=true&wait_timeout=20"
        assert http.get(ended, headers=headers, timeout=30).json()["is_done"]  # nothing else under way
        # And a graceful stop with runs under way ends within seconds, saying what becomes of them
        sleeping = http.post(
            f"{url}/v1/runs", headers=headers, json={"task_id": "examples/sleep", "arguments": {"seconds": 60}}
        ).json()
        running(url, sleeping["run_id"])
        later = http.post(
            f"{url}/v1/runs", headers=headers, json={"task_id": "team/add", "arguments": {"a": 1}, "delay": 600}
        ).json()
        assert later["status"] == "queued"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=10)
        stopped = datetime.now(UTC)
        assert process.returncode == 0
        said = "stopping with 2 runs under way: 1 running ends failed at the next start, 1 queued stays queued"
        assert output.splitlines()[-1] == f"taskrun local: {said}", output
        assert "Runtime.ExitError" not in output
        assert "1 runs cut off by the last stop were ended failed" in output
        assert f"state: {data}" in output

    # And the run that stop cut off ends at the next start as said, dated when the stack stopped
    # (not when it started again: its duration is the time it ran)
    until(lambda: (datetime.now(UTC) - stopped).total_seconds() > 2, 10, every=0.2)
    with started("--data", str(data)) as (url, process):
        cut_off = http.get(f"{url}/v1/runs/{sleeping['run_id']}", headers=headers).json()
        assert cut_off["status"] == "failed", cut_off
        assert cut_off["error"]["message"].startswith("the local stack stopped while the run was running"), cut_off
        assert datetime.fromisoformat(cut_off["ended_at"]) <= stopped, (cut_off["ended_at"], stopped)
        assert http.get(f"{url}/v1/runs/{later['run_id']}", headers=headers).json()["status"] == "queued"
        http.post(f"{url}/v1/runs/{later['run_id']}/cancel", headers=headers)

    # And a stack started with --ephemeral keeps nothing
    with started("--ephemeral") as (url, _):
        assert http.get(f"{url}/v1/runs/{done['run_id']}", headers=headers).status_code == 404


def test_the_stages_throttle_is_set_from_the_environment_as_the_templates_parameters_set_it() -> None:
    headers = {"X-API-KEY": "cli-key"}
    # Given a stack whose stage takes one request a second, in bursts of two
    with started("--ephemeral", TASKRUN_STAGE_RATE_LIMIT="1", TASKRUN_STAGE_BURST_LIMIT="2") as (url, _):
        # (its start's health checks took tokens too: wait, a second between asks, until one is there)
        until(lambda: http.get(f"{url}/v1/tasks", headers=headers).status_code == 200, 30, every=1.0)
        # When a client sends six at once
        answers = [http.get(f"{url}/v1/tasks", headers=headers) for _ in range(6)]
    # Then what is past the burst is refused with 429 and when to come back, whatever the key
    codes = [answer.status_code for answer in answers]
    assert 429 in codes and codes.count(200) <= 2, codes
    refused = next(answer for answer in answers if answer.status_code == 429)
    assert int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["content-type"] == "application/problem+json"


def test_allowing_private_webhooks_lets_a_receiver_on_this_machine_through_but_never_the_metadata_address() -> None:
    headers = {"X-API-KEY": "cli-key"}
    body = {"task_id": "team/add", "arguments": {"a": 1}}
    with started("--ephemeral", TASKRUN_WEBHOOK_ALLOW_PRIVATE="1") as (url, _):
        mine = http.post(f"{url}/v1/runs", headers=headers, json={**body, "webhook_url": "http://127.0.0.1:9/hook"})
        assert mine.status_code == 201
        inside = http.post(f"{url}/v1/runs", headers=headers, json={**body, "webhook_url": "http://10.0.0.7/hook"})
        assert inside.status_code == 201
        metadata = http.post(
            f"{url}/v1/runs", headers=headers, json={**body, "webhook_url": "http://169.254.169.254/latest/"}
        )
        assert metadata.status_code == 422
