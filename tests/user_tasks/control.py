"""Tasks for the tests of run control: cancels that stop the code, retries, delays."""

import time
from pathlib import Path

from taskrun import task


@task("control/ticker", timeout=60)
def ticker(marks: str, ticks: int = 600) -> int:
    """Append a tick to the file `marks` ten times a second, printing each; `done` at the end."""
    path = Path(marks)
    for tick in range(ticks):
        with path.open("a") as out:
            out.write(f"{tick}\n")
        print(f"tick {tick}", flush=True)
        time.sleep(0.1)
    with path.open("a") as out:
        out.write("done\n")
    return ticks
