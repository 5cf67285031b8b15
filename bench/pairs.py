"""Before and after, in pairs, on a machine whose speed drifts from hour to hour:
`.venv/bin/python bench/pairs.py OTHER_CHECKOUT [--rounds N] [--runs N]`.

OTHER_CHECKOUT is another clone of the project (another commit) with its own `.venv`. Each
round measures, one right after the other, in that checkout and then in this one: the start
of `taskrun local` to its first run succeeded (a fresh state folder), and a burst of no-op
runs from 8 clients with the runs ended a second and the CPU a run took in the stack's
process and in the sandboxes. Each side runs its own `bench/run.py` code, so a pair
compares the two commits in the same minutes; a figure taken an hour apart on this kind of
machine can differ by half. Prints every pair, then the medians and their ratios, and how
many runs succeeded; exits 1 if any did not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

# run by each checkout's own interpreter, with its bench/run.py importable
START = """
import json, run
figures = run.start_to_first_run(1)
print(json.dumps({**figures, "outcomes": {k: dict(v) for k, v in run.OUTCOMES.counts.items()}}))
"""
BURST = """
import collections, json, multiprocessing, sys, tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
import run

def main(count):
    with tempfile.TemporaryDirectory() as folder:
        bench = run.Bench(Path(folder))
        try:
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as clients:
                for _ in range(3):  # the sandboxes 8 clients need, started
                    clients.submit(run.drive, bench.url, 8, 32).result()
                bench.quiet()
                before = run.cpu_seconds(bench)
                _, ended, statuses = clients.submit(run.drive, bench.url, 8, count).result()
                after = run.cpu_seconds(bench)
        finally:
            bench.stop()
    used = {name: (after[name] - before.get(name, 0.0)) * 1000 / count for name in after}
    print(json.dumps({
        "ended_per_s": count / ended,
        "stack_ms": used["stack"],
        "sandboxes_ms": sum(ms for name, ms in used.items() if name != "stack"),
        "outcomes": {"burst": dict(collections.Counter(statuses))},
    }))

if __name__ == "__main__":
    main(int(sys.argv[1]))
"""


def measure(checkout: Path, script: str, *arguments: str) -> dict[str, Any]:
    """One measurement by a checkout's own interpreter and benchmark code."""
    python = checkout / ".venv" / "bin" / "python"
    answer = subprocess.run(
        [str(python), "-c", script, *arguments], cwd=checkout / "bench", capture_output=True, text=True, timeout=900
    )
    if answer.returncode != 0:
        raise SystemExit(f"{checkout}: the measurement failed:\n{answer.stderr[-3000:]}")
    return dict(json.loads(answer.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("other", type=Path, help="another checkout of the project, with its own .venv")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of each measurement (default 3)")
    parser.add_argument("--runs", type=int, default=200, help="no-op runs in each burst (default 200)")
    args = parser.parse_args()
    sides = {"other": args.other.resolve(), "this": ROOT}
    for side, checkout in sides.items():
        if not (checkout / ".venv" / "bin" / "python").exists() or not (checkout / "bench" / "run.py").exists():
            raise SystemExit(f"{side} checkout {checkout} has no .venv/bin/python or bench/run.py")
    figures: dict[str, dict[str, list[float]]] = {side: {} for side in sides}
    succeeded = failed = 0
    for round_number in range(1, args.rounds + 1):
        for side, checkout in sides.items():
            measured = {**measure(checkout, START), **measure(checkout, BURST, str(args.runs))}
            for counts in measured.pop("outcomes").values():
                succeeded += counts.get("succeeded", 0)
                failed += sum(n for status, n in counts.items() if status != "succeeded")
            for name, value in measured.items():
                figures[side].setdefault(name, []).append(float(value))
            shown = "  ".join(f"{name} {value:.2f}" for name, value in measured.items())
            print(f"round {round_number} {side:5} {shown}", flush=True)
    print(f"\nmedians of {args.rounds} pairs (other: {sides['other']})")
    print(f"{'figure':16} {'other':>9} {'this':>9} {'this / other':>13}")
    for name, values in figures["this"].items():
        other, this = statistics.median(figures["other"][name]), statistics.median(values)
        print(f"{name:16} {other:9.2f} {this:9.2f} {this / other:13.2f}")
    print(f"\nruns: {succeeded} succeeded, {failed} did not")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
