"""Throughput and waited-run latency of the local stack under concurrent clients:
`.venv/bin/python bench/local_load.py [RUNS]`.

Prints, for 1 and 16 concurrent clients:
- runs per second started (POST /v1/runs without waiting) and ended (every one of them
  succeeded), for RUNS runs of a no-op task;
- p50 and p99 of a waited no-op run (POST /v1/runs with wait=true), RUNS runs.
Figures are for this machine and the local stack, not for AWS.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from taskrun.local.stack import LocalStack

KEY = "bench-key"
NOOP = {"task_id": "examples/echo", "arguments": {"message": "bench"}}


def percentile(timings: list[float], fraction: float) -> float:
    ordered = sorted(timings)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def in_parallel(clients: int, count: int, call: Callable[[httpx.Client, int], object], url: str) -> float:
    """Make `count` calls spread over `clients` threads, each with its own connection; seconds taken."""
    local = threading.local()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, headers={"X-API-KEY": KEY}, timeout=120)
        return local.client  # type: ignore[no-any-return]

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(lambda i: call(client(), i), range(count)))
    return time.perf_counter() - began


def throughput(url: str, clients: int, count: int) -> None:
    run_ids: list[str] = []

    def start(api: httpx.Client, _: int) -> None:
        response = api.post("/v1/runs", json=NOOP)
        response.raise_for_status()
        run_ids.append(response.json()["run_id"])

    began = time.perf_counter()
    started_in = in_parallel(clients, count, start, url)

    def wait(api: httpx.Client, index: int) -> None:
        run = api.get(f"/v1/runs/{run_ids[index]}", params={"wait": "true", "wait_timeout": 25}).json()
        assert run["status"] == "succeeded", run

    in_parallel(clients, count, wait, url)
    ended_in = time.perf_counter() - began
    print(
        f"clients={clients:<3} runs={count:<5} started {count / started_in:7.1f} runs/s"
        f"   ended {count / ended_in:7.1f} runs/s"
    )


def waited_latency(url: str, clients: int, count: int) -> None:
    timings: list[float] = []

    def run(api: httpx.Client, _: int) -> None:
        began = time.perf_counter()
        response = api.post("/v1/runs", json={**NOOP, "wait": True})
        timings.append((time.perf_counter() - began) * 1000)
        assert response.json()["status"] == "succeeded", response.text

    in_parallel(clients, count, run, url)
    print(
        f"clients={clients:<3} waited no-op run   p50={statistics.median(timings):7.1f} ms"
        f"  p99={percentile(timings, 0.99):7.1f} ms  (n={count})"
    )


def main(count: int) -> None:
    stack = LocalStack(root=Path(__file__).resolve().parents[1], api_key=KEY)
    stack.start()
    server = stack.serve("127.0.0.1", 0, log=False)
    host, port = server.server_address[:2]
    url = f"http://{host}:{port}"
    try:
        in_parallel(16, 64, lambda api, _: api.post("/v1/runs", json={**NOOP, "wait": True}), url)  # warm up
        for clients in (1, 16):
            throughput(url, clients, count)
            waited_latency(url, clients, count)
    finally:
        stack.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
