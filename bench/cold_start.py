"""Import time of each function's handler module, the bulk of a Lambda cold start:
`.venv/bin/python bench/cold_start.py [REPEATS]`.

Each import runs in a fresh interpreter, as a new Lambda sandbox would. (Functions that
use the catalog import the task modules on their first call, a further ~25 ms for the
bundle's.) Prints the median per function.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import importlib.util, sys, time
began = time.perf_counter()
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print((time.perf_counter() - began) * 1000)
"""


def main(repeats: int) -> None:
    env = {**os.environ, "TASKRUN_TASK_DIRS": str(ROOT / "tasks"), "POWERTOOLS_TRACE_DISABLED": "true"}
    for app in sorted(ROOT.glob("functions/*/app.py")):
        timings = [
            float(
                subprocess.run(
                    [sys.executable, "-c", PROBE, str(app)], capture_output=True, text=True, check=True, env=env
                ).stdout
            )
            for _ in range(repeats)
        ]
        print(f"{app.parent.name:<14} import: median {statistics.median(timings):6.0f} ms  (n={repeats})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
