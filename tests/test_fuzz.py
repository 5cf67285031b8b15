"""schemathesis, the OpenAPI fuzzer, against a local stack as a user starts it: every
operation of the API document, over a thousand generated cases, its default checks (no
5xx, status codes, content types, response schemas and headers as documented, valid data
accepted and invalid data refused) and its stateful phase, within a time budget."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT

KEY = "fuzz-key-0123456789abcdef"
# Each run is bounded by time; in one this machine generates about 2,200 cases, a busy one
# 700 or so. A slow machine runs again with the next seed until MIN_CASES were generated
# (at most ROUNDS runs), so the test asks for cases, not for speed.
EXAMPLES = 40
BUDGET_SECONDS = 45
MIN_CASES = 1000
ROUNDS = 5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def fuzzed_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`taskrun local --ephemeral` in a process of its own, its waits short so that the
    fuzzer's many waited runs do not eat its budget, and neither the stage's nor a key's rate
    limit in its way (its bursts of refused credentials pass a hundred a second)."""
    port = free_port()
    env = {
        **os.environ,
        "TASKRUN_API_KEY": KEY,
        "TASKRUN_KEY_RATE_LIMIT": "100000",
        "TASKRUN_STAGE_RATE_LIMIT": "100000",
        "TASKRUN_STAGE_BURST_LIMIT": "100000",
        "TASKRUN_MAX_WAIT_SECONDS": "2",
        "TASKRUN_LOG_LEVEL": "ERROR",
    }
    log = (tmp_path_factory.mktemp("fuzz") / "local.log").open("w")
    stack = subprocess.Popen(
        [sys.executable, "-m", "taskrun.cli", "local", "--ephemeral", "--port", str(port)],
        cwd=tmp_path_factory.mktemp("fuzz_cwd"),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert stack.poll() is None, "the local stack stopped"
            try:
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the local stack did not come up"
            time.sleep(0.5)
        yield url
    finally:
        stack.terminate()
        stack.wait(30)
        log.close()


def test_schemathesis_finds_nothing_in_a_thousand_cases_and_the_stateful_phase(
    fuzzed_stack: str, tmp_path: Path
) -> None:
    generated = 0
    for seed in range(20261201, 20261201 + ROUNDS):
        generated += fuzz_once(fuzzed_stack, tmp_path, seed)
        if generated >= MIN_CASES:
            break
    assert generated >= MIN_CASES, f"{generated} cases in {ROUNDS} runs"


def fuzz_once(fuzzed_stack: str, tmp_path: Path, seed: int) -> int:
    """One schemathesis run, every phase and default check; the cases it generated."""
    run = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{fuzzed_stack}/v1/openapi.json",
            "--header",
            f"X-API-KEY: {KEY}",
            "--max-examples",
            str(EXAMPLES),
            "--max-time",
            str(BUDGET_SECONDS),
            "--request-timeout",
            "15",
            "--seed",
            str(seed),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=BUDGET_SECONDS + 240,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(ROOT / "tests" / "fuzz_hooks.py")},
        cwd=tmp_path,  # its cache of earlier failures stays out of the repository
    )
    output = run.stdout + run.stderr
    summary = output[output.rfind("SUMMARY") :]
    print(summary)
    assert run.returncode == 0, output[-6000:]
    operations = sum(len(item) for item in json.loads((ROOT / "docs" / "openapi.json").read_text())["paths"].values())
    assert re.search(rf"Tested: {operations}\b", summary), summary
    assert "✅ Stateful" in summary, summary
    return int(re.search(r"(\d+) generated", summary).group(1))  # type: ignore[union-attr]
