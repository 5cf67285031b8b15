"""A run's logs and traceback: kept with the run, served at GET /v1/runs/{run_id}/logs."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from taskrun.local.stack import LocalStack
from taskrun.results.tasklogs import MAX_LOG_BYTES


def run(api: httpx.Client, task_id: str, **arguments: Any) -> dict[str, Any]:
    answer = api.post("/v1/runs?wait=true&wait_timeout=20", json={"task_id": task_id, "arguments": arguments})
    assert answer.status_code == 201, answer.text
    ended = answer.json()
    assert ended["is_done"], ended
    return ended


def logs_of(api: httpx.Client, run_id: str) -> dict[str, Any]:
    answer = api.get(f"/v1/runs/{run_id}/logs")
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_failed_run_names_its_exception_and_frames_and_keeps_what_it_printed_and_logged(
    api: httpx.Client, stack: LocalStack
) -> None:
    # When a task prints, logs and raises from a helper
    failed = run(api, "noisy/fail", number=3)
    # Then the run's error carries the exception's type, message and the task's own frames
    assert failed["status"] == "failed"
    error = failed["error"]
    assert error["type"] == "execution_error" and error["exception_type"] == "ValueError"
    assert error["message"] == "3 is too many"
    assert [frame["function"] for frame in error["frames"]] == ["fail", "_check"]
    assert all(frame["file"].endswith("noisy.py") and frame["line"] > 0 for frame in error["frames"])
    # and its logs hold the output in order, the log record at INFO (not DEBUG), and the traceback
    logs = logs_of(api, failed["run_id"])
    assert logs["run_id"] == failed["run_id"] and logs["truncated"] is False
    text = logs["text"]
    assert text.index("checking 3") < text.index("INFO noisy: about to check 3") < text.index("Traceback")
    assert "a detail below the log level" not in text
    assert text.rstrip().endswith("ValueError: 3 is too many")
    assert f"line {error['frames'][-1]['line']}, in _check\n" in text
    # with each frame's line of source, as Python prints it
    assert 'raise ValueError(f"{number} is too many")' in text
    assert error["frames"][-1]["code"] == 'raise ValueError(f"{number} is too many")'
    assert "taskrun/" not in text.replace("tests/user_tasks", "")  # only the task's frames
    # And each line went to the worker's structured log with the run's id and task
    deadline = time.monotonic() + 5
    while True:
        lines = [json.loads(line) for _, line in list(stack.emulator.runtime.logs) if line.startswith("{")]
        printed = [line for line in lines if line.get("message") == "checking 3"]
        if printed or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert printed and printed[0]["run_id"] == failed["run_id"] and printed[0]["task_id"] == "noisy/fail"
    assert printed[0]["stream"] == "stdout" and printed[0]["service"] == "taskrun"


def test_taskrun_log_level_sets_what_a_task_logs(api: httpx.Client, stack: LocalStack) -> None:
    # Given the worker's TASKRUN_LOG_LEVEL set to DEBUG (INFO when not set)
    runtime = stack.emulator.runtime
    runtime.update_environment(["WorkerFunction"], {"TASKRUN_LOG_LEVEL": "DEBUG"})
    try:
        text = logs_of(api, run(api, "noisy/fail", number=4)["run_id"])["text"]
    finally:
        runtime.update_environment(["WorkerFunction"], {"TASKRUN_LOG_LEVEL": None})
    # Then the task's debug records are kept too
    assert "DEBUG noisy: a detail below the log level" in text


def test_logs_keep_the_last_64_kb(api: httpx.Client) -> None:
    # When a task prints about 200 KB
    chatty = run(api, "noisy/chatty", lines=2000, width=100)
    assert chatty["status"] == "succeeded"
    logs = logs_of(api, chatty["run_id"])
    # Then the last 64 KB are kept, ending with the last line, and the cut is said
    assert logs["truncated"] is True
    assert MAX_LOG_BYTES - 200 < len(logs["text"].encode()) <= MAX_LOG_BYTES
    assert logs["text"].endswith("001999 " + "x" * 100 + "\n")
    # And a short output is kept whole
    short = logs_of(api, run(api, "noisy/chatty", lines=2, width=3)["run_id"])
    assert short | {"cursor": ""} == {
        "run_id": short["run_id"],
        "text": "000000 xxx\n000001 xxx\n",
        "truncated": False,
        "cursor": "",
        "ended": True,
    }


def test_a_run_cut_off_by_its_timeout_keeps_what_it_printed(api: httpx.Client) -> None:
    stuck = run(api, "noisy/stuck")
    assert stuck["status"] == "timed_out"
    assert logs_of(api, stuck["run_id"])["text"] == "started; now waiting\n"


def test_a_quiet_run_has_empty_logs_and_an_unknown_run_has_none(api: httpx.Client) -> None:
    quiet = run(api, "team/add", a=1)
    logs = logs_of(api, quiet["run_id"])
    assert (logs["run_id"], logs["text"], logs["truncated"], logs["ended"]) == (quiet["run_id"], "", False, True)
    missing = api.get("/v1/runs/run_00000000000000000000000000/logs")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


def test_a_flow_runs_logs_hold_each_steps_output(api: httpx.Client) -> None:
    relayed = run(api, "team/relay", size=12)
    assert relayed["status"] == "succeeded"
    text = logs_of(api, relayed["run_id"])["text"]
    assert text == "--- step team/blob ---\nmaking 12 characters\n"
