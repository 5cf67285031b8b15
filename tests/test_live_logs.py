"""Runs watched as they go: logs read with a cursor while the task prints (scripts, flow
steps, retried attempts), the task's progress on the run, in lists and in its webhook, and the
CLI following both."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY
from tests.receiver import Receiver
from tests.test_run_control import started, waited

TASKRUN = str(Path(sys.executable).parent / "taskrun")


def follow(api: httpx.Client, run_id: str, every: float = 0.3, timeout: float = 60) -> list[tuple[str, dict[str, Any]]]:
    """Each answer of the run's logs, read from the last answer's cursor until one says the
    run has ended, with the run's status read just after it."""
    deadline = time.monotonic() + timeout
    answers: list[tuple[str, dict[str, Any]]] = []
    cursor = None
    while True:
        answer = api.get(f"/v1/runs/{run_id}/logs", params={"cursor": cursor} if cursor else None)
        assert answer.status_code == 200, answer.text
        logs = answer.json()
        answers.append((api.get(f"/v1/runs/{run_id}").json()["status"], logs))
        if logs["ended"]:
            return answers
        assert time.monotonic() < deadline, answers
        cursor = logs["cursor"]
        time.sleep(every)


def text_of(answers: list[tuple[str, dict[str, Any]]]) -> str:
    return "".join(logs["text"] for _, logs in answers)


def test_a_script_s_logs_grow_while_it_runs_and_a_cursor_answers_only_what_is_new(api: httpx.Client) -> None:
    # Given a task that prints a line a second
    run = started(api, {"task_id": "noisy/steady", "arguments": {"lines": 4}})
    # When its logs are read from each answer's cursor until the run has ended
    answers = follow(api, run["run_id"])
    # Then each line came once, in order, and lines came while the run still ran
    assert text_of(answers) == "".join(f"line {n} of 4\n" for n in range(1, 5))
    while_running = [logs["text"] for status, logs in answers if status == "running" and logs["text"]]
    assert while_running, answers
    assert all(not logs["truncated"] for _, logs in answers)
    # And the last answer's cursor, read again, holds nothing more
    again = api.get(f"/v1/runs/{run['run_id']}/logs", params={"cursor": answers[-1][1]["cursor"]}).json()
    assert again["text"] == "" and again["ended"] is True
    # And the whole logs, without a cursor, are the same text
    whole = api.get(f"/v1/runs/{run['run_id']}/logs").json()
    assert whole["text"] == text_of(answers) and whole["ended"] is True


def test_characters_split_between_reads_come_whole(api: httpx.Client) -> None:
    run = started(api, {"task_id": "noisy/steady", "arguments": {"lines": 3, "every": 0.4, "word": "é€😀"}})
    answers = follow(api, run["run_id"], every=0.1)
    assert text_of(answers) == "".join(f"é€😀 {n} of 3\n" for n in range(1, 4))


def test_a_flow_step_s_logs_grow_while_it_runs_headed_by_its_task(api: httpx.Client) -> None:
    run = started(api, {"task_id": "noisy/paced", "arguments": {"lines": 3}})
    answers = follow(api, run["run_id"])
    assert text_of(answers) == "--- step noisy/steady ---\n" + "".join(f"line {n} of 3\n" for n in range(1, 4))
    assert [logs["text"] for status, logs in answers if status == "running" and logs["text"]], answers
    assert waited(api, run["run_id"])["status"] == "succeeded"


def test_a_retried_run_s_attempts_follow_one_another_from_a_cursor(api: httpx.Client, tmp_path: Path) -> None:
    # Given a run that fails twice before it succeeds, each attempt printing its number
    run = started(api, {"task_id": "control/flaky", "arguments": {"marks": str(tmp_path / "marks")}})
    answers = follow(api, run["run_id"], every=0.2)
    followed = text_of(answers)
    # Then the followed text is the whole logs, each attempt under its heading, in order
    assert followed == api.get(f"/v1/runs/{run['run_id']}/logs").json()["text"]
    headings = [line for line in followed.splitlines() if line.startswith("--- attempt")]
    assert headings == ["--- attempt 1 ---", "--- attempt 2 ---", "--- attempt 3 ---"]
    assert [line for line in followed.splitlines() if line.startswith("attempt ")] == [
        "attempt 1",
        "attempt 2",
        "attempt 3",
    ]
    assert followed.count("ConnectionError: attempt 1 could not connect") == 1


def test_progress_shows_on_the_run_in_lists_and_in_its_webhook(api: httpx.Client, receiver: Receiver) -> None:
    # Given a task that reports its progress after each of its 4 lines
    body = {"task_id": "noisy/steady", "arguments": {"lines": 4, "every": 0.7}, "webhook_url": receiver.url}
    run = started(api, body)
    run_id = run["run_id"]
    # While it runs, the run shows how far it has come, and so does the list of runs
    seen: list[dict[str, Any]] = []
    listed: list[dict[str, Any]] = []
    deadline = time.monotonic() + 60
    while (now := api.get(f"/v1/runs/{run_id}").json())["status"] in ("pending", "running"):
        assert time.monotonic() < deadline
        if now["status"] == "running" and now["progress"]:
            seen.append(now["progress"])
            page = api.get("/v1/runs", params={"task_id": "noisy/steady", "limit": 20}).json()["runs"]
            listed += [item["progress"] for item in page if item["run_id"] == run_id and item["progress"]]
        time.sleep(0.2)
    assert seen and listed
    first = seen[0]
    assert first["total"] == 4 and 1 <= first["done"] <= 4 and first["percent"] == first["done"] * 25
    assert first["message"] == f"line {first['done']:g}"
    # Once it has ended, the last report stays
    ended = waited(api, run_id)
    assert ended["progress"]["done"] == 4 and ended["progress"]["percent"] == 100
    assert ended["progress"]["message"] == "line 4"
    # And the webhook's message carries it
    receiver.wait_for(lambda: bool(receiver.of_run(run_id)))
    (received,) = receiver.of_run(run_id)
    assert receiver.verify(received)["data"]["progress"] == ended["progress"]


def test_a_progress_report_that_makes_no_sense_fails_the_run_clearly(api: httpx.Client) -> None:
    ended = api.post("/v1/runs?wait=true", json={"task_id": "noisy/reckless", "arguments": {}}).json()
    assert ended["status"] == "failed" and ended["error"]["exception_type"] == "ValueError"
    assert "progress(-1, 10)" in ended["error"]["message"] and "done" in ended["error"]["message"]


def _cursor(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "%%%",
        _cursor({"run": "run_00000000000000000000000000", "part": "", "at": 0}),  # another run's
        "RUN",  # the run's own, with `at` below zero
        "STR",  # `at` not a number
        "PART",  # a part name no worker writes
        "x" * 2001,
    ],
)
def test_a_cursor_this_api_did_not_give_for_this_run_is_a_422_problem(api: httpx.Client, cursor: str) -> None:
    run = api.post("/v1/runs?wait=true", json={"task_id": "team/add", "arguments": {"a": 1}}).json()
    mangled = {
        "RUN": _cursor({"run": run["run_id"], "part": "", "at": -1}),
        "STR": _cursor({"run": run["run_id"], "part": "", "at": "0"}),
        "PART": _cursor({"run": run["run_id"], "part": "../../keys", "at": 0}),
    }
    answer = api.get(f"/v1/runs/{run['run_id']}/logs", params={"cursor": mangled.get(cursor, cursor)})
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["errors"][0]["location"] == "query.cursor", answer.json()


def test_runs_logs_follow_prints_lines_as_they_come_and_stops_when_the_run_ends(
    api: httpx.Client, base_url: str, tmp_path: Path
) -> None:
    gate = tmp_path / "go-on"  # the run holds after its first line until the test has read it
    run = started(api, {"task_id": "noisy/steady", "arguments": {"lines": 3, "every": 0.2, "gate": str(gate)}})
    env = {**os.environ, "TASKRUN_URL": base_url, "TASKRUN_API_KEY": API_KEY}
    command = [TASKRUN, "runs", "logs", run["run_id"], "--follow"]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as follower:
        assert follower.stdout is not None and follower.stderr is not None
        first = follower.stdout.readline()
        status_then = api.get(f"/v1/runs/{run['run_id']}").json()["status"]
        gate.touch()
        rest = follower.stdout.read()  # to the end: the command stops once the run has ended
        assert follower.wait(timeout=60) == 0, follower.stderr.read()
    # the first line was printed while the run still ran; the command ended with the run
    assert first == "line 1 of 3\n" and status_then == "running"
    assert first + rest == "line 1 of 3\nline 2 of 3\nline 3 of 3\n"


def test_run_with_logs_prints_them_as_they_come_then_the_result(base_url: str) -> None:
    env = {**os.environ, "TASKRUN_URL": base_url, "TASKRUN_API_KEY": API_KEY}
    ran = subprocess.run(
        [TASKRUN, "run", "noisy/steady", "-a", "lines=2", "-a", "every=0.5", "--logs"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "2\n"
    assert ran.stderr.startswith("line 1 of 2\nline 2 of 2\n") and "noisy/steady succeeded" in ran.stderr
