"""Latency of the local stack, end to end over HTTP: `.venv/bin/python bench/run_latency.py [N]`.

Prints percentiles for: a run started and waited for (greet), a run started without
waiting, a run fetched by id, and a page of the run list. Figures are for this machine
and the in-process emulator, not for AWS.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from taskrun.local.stack import LocalStack

KEY = "bench-key"


def measure(label: str, count: int, call: Callable[[], httpx.Response]) -> None:
    timings = []
    for _ in range(count):
        began = time.perf_counter()
        response = call()
        timings.append((time.perf_counter() - began) * 1000)
        response.raise_for_status()
    timings.sort()
    p95 = timings[min(len(timings) - 1, int(len(timings) * 0.95))]
    p50 = statistics.median(timings)
    print(f"{label:<34} n={count:<4} p50={p50:7.1f} ms  p95={p95:7.1f} ms  max={timings[-1]:7.1f} ms")


def main(count: int) -> None:
    stack = LocalStack(root=Path(__file__).resolve().parents[1], api_key=KEY)
    stack.start()
    server = stack.serve("127.0.0.1", 0, log=False)
    host, port = server.server_address[:2]
    greet = {"task_id": "examples/greet", "arguments": {"name": "bench"}}
    try:
        with httpx.Client(base_url=f"http://{host}:{port}", headers={"X-API-KEY": KEY}, timeout=60) as api:
            api.post("/v1/runs", json={**greet, "wait": True})  # cold starts
            waited = {**greet, "wait": True}
            measure("POST /v1/runs wait=true (greet)", count, lambda: api.post("/v1/runs", json=waited))
            measure("POST /v1/runs (no wait)", count, lambda: api.post("/v1/runs", json=greet))
            run_id = api.post("/v1/runs", json=waited).json()["run_id"]
            measure("GET /v1/runs/{id}", count, lambda: api.get(f"/v1/runs/{run_id}"))
            measure("GET /v1/runs?limit=20", count, lambda: api.get("/v1/runs", params={"limit": 20}))
            batch = {"task_id": "examples/batch", "arguments": {"numbers": [1, 2, 3, 4]}, "wait": True}
            measure("POST /v1/runs wait=true (Map flow)", max(1, count // 5), lambda: api.post("/v1/runs", json=batch))
    finally:
        stack.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
