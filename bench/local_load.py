"""Throughput and waited-run latency of the local stack under concurrent clients:
`.venv/bin/python bench/local_load.py [RUNS]`.

Prints, for 1 and 16 concurrent clients:
- runs per second started (POST /v1/runs without waiting) and ended (every one of them
  succeeded), for RUNS runs of a no-op task;
- p50 and p99 of a waited no-op run (POST /v1/runs with wait=true), RUNS runs;
- health under a flood: p50, p99 and the slowest GET /v1/health from one client while 48
  others send waited runs of a 2 s task and wrong keys as fast as they are answered, with
  the flood's answers counted by status (past capacity they are 429s, never 5xx).
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


def health_under_flood(url: str, seconds: float = 20.0, flooders: int = 48) -> None:
    statuses: dict[int, int] = {}
    timings: list[float] = []
    stop = threading.Event()
    lock = threading.Lock()

    def flood(index: int) -> None:
        key = KEY if index % 3 else "trk_" + "0" * 36  # a third of them with a wrong key
        with httpx.Client(base_url=url, headers={"X-API-KEY": key}, timeout=60) as api:
            while not stop.is_set():
                body = {"task_id": "examples/sleep", "arguments": {"seconds": 2}, "wait": True}
                status = api.post("/v1/runs", json=body).status_code
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1

    with ThreadPoolExecutor(max_workers=flooders) as pool:
        for index in range(flooders):
            pool.submit(flood, index)
        time.sleep(2)  # the flood under way
        with httpx.Client(base_url=url, timeout=60) as probe:
            ends = time.monotonic() + seconds
            while time.monotonic() < ends:
                began = time.perf_counter()
                assert probe.get("/v1/health").status_code == 200
                timings.append((time.perf_counter() - began) * 1000)
                time.sleep(0.1)
        stop.set()
    counted = "  ".join(f"{status}: {n}" for status, n in sorted(statuses.items()))
    print(
        f"health under a flood of {flooders} clients   p50={statistics.median(timings):7.1f} ms"
        f"  p99={percentile(timings, 0.99):7.1f} ms  max={max(timings):7.1f} ms  (n={len(timings)})"
        f"   flood answers: {counted}"
    )
    assert not any(status >= 500 for status in statuses), statuses


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
        health_under_flood(url)
    finally:
        stack.stop()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
