"""How soon a running task's output and progress are seen through the API, on the local
stack: `.venv/bin/python bench/live_logs.py [SECONDS]`.

Runs `examples/countdown` (a line and a progress report each second, for SECONDS, 10 by
default) and follows it as a client does: its logs read from the last cursor and the run
read, each every 0.1 s. For each line and each report it prints the lag from when the task
made it (the run's start plus one second a line, as the task counts) to when a read first
showed it: p50 and the slowest. The worker keeps a running call's logs and progress at most
once a second (taskrun.results.runlogs), so a lag of about 1 s is the design; 2 s is the target.
Figures are for this machine and the local stack, not for AWS.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from taskrun.local.stack import LocalStack

KEY = "bench-key-0123456789"
EVERY = 0.1


def main(seconds: int) -> None:
    stack = LocalStack(root=Path(__file__).resolve().parents[1], api_key=KEY)
    stack.start()
    server = stack.serve("127.0.0.1", 0, log=False)
    host, port = server.server_address[:2]
    try:
        with httpx.Client(base_url=f"http://{host}:{port}", headers={"X-API-KEY": KEY}, timeout=60) as api:
            api.post("/v1/runs?wait=true", json={"task_id": "examples/countdown", "arguments": {"seconds": 1}})
            run = api.post("/v1/runs", json={"task_id": "examples/countdown", "arguments": {"seconds": seconds}}).json()
            line_seen: dict[int, float] = {}
            report_seen: dict[int, float] = {}
            cursor, started_at = None, None
            while True:
                logs = api.get(f"/v1/runs/{run['run_id']}/logs", params={"cursor": cursor} if cursor else None).json()
                now = time.time()
                cursor = logs["cursor"]
                for _ in logs["text"].splitlines():
                    line_seen[len(line_seen) + 1] = now
                state = api.get(f"/v1/runs/{run['run_id']}").json()
                if state["started_at"]:
                    started_at = datetime.fromisoformat(state["started_at"].replace("Z", "+00:00")).timestamp()
                if state["progress"]:
                    report_seen.setdefault(int(state["progress"]["done"]), time.time())
                if logs["ended"]:
                    break
                time.sleep(EVERY)
    finally:
        stack.stop()
    assert started_at is not None
    # the task prints line k and reports k at about started_at + (k - 1) s
    line_lags = [seen - (started_at + number - 1) for number, seen in line_seen.items()]
    report_lags = [seen - (started_at + done - 1) for done, seen in report_seen.items()]
    print(f"examples/countdown, {seconds} lines a second apart, followed every {EVERY} s")
    print(f"{'':<24}{'seen':>6}{'p50 s':>8}{'slowest s':>11}")
    for label, lags, made in (("log lines", line_lags, seconds), ("progress reports", report_lags, seconds)):
        print(f"{label:<24}{len(lags):>3}/{made:<2}{statistics.median(lags):>8.2f}{max(lags):>11.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
