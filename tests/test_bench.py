"""The benchmark counts how its runs ended and fails on a scenario whose runs did not end as
meant; its task module does what its scenarios say (bench/nap sleeps)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "bench" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_scenario_whose_runs_did_not_end_as_meant_is_named_and_fails_the_benchmark(
    bench: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    outcomes = bench.Outcomes()
    outcomes.add("fine", {"run_id": "run_a", "status": "succeeded"})
    outcomes.add("fine", {"run_id": "run_b", "status": "succeeded"})
    assert outcomes.verdict() == 0
    failing = {"run_id": "run_c", "status": "failed", "error": {"type": "execution_error", "message": "NameError"}}
    outcomes.add("lag", failing)
    outcomes.add("lag", {"run_id": "run_d", "status": "succeeded"})
    outcomes.add("lag", {"run_id": "run_e", "status": "succeeded", "duration_ms": 3}, lambda run: "did not sleep")
    assert outcomes.of("fine") == "2 succeeded"
    assert outcomes.of("lag") == "2 succeeded 1 failed (1 wrong)"
    assert outcomes.verdict() == 1
    printed = capsys.readouterr().err
    assert "FAILED: lag: 2 run(s) did not end as meant, first: run_c failed: execution_error: NameError" in printed
    assert "fine" not in printed


def test_the_benchmark_s_tasks_run_as_its_scenarios_say(bench: ModuleType, tmp_path: Path) -> None:
    # The module the benchmark writes into a tasks directory, imported as the worker would
    (tmp_path / "bench_chain.py").write_text(bench.CHAIN_MODULE)
    probe = "import bench_chain; print(bench_chain.nap(0.05), bench_chain.inc(41))"
    answered = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.split() == ["0.05", "42"]


def test_the_pairs_benchmark_refuses_a_checkout_it_cannot_run(tmp_path: Path) -> None:
    """bench/pairs.py compares this checkout with another one run by its own interpreter: a
    folder without one is refused at once, by name, before anything is measured."""
    answer = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "pairs.py"), str(tmp_path), "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert answer.returncode != 0
    assert f"other checkout {tmp_path.resolve()} has no .venv/bin/python or bench/run.py" in answer.stderr
    assert "round 1" not in answer.stdout
