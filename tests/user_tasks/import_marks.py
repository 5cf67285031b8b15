"""Leaves a mark each time a function imports the tasks' modules, where a test asks for
marks (TASKRUN_TEST_IMPORT_MARKS in that function's environment): the function's name."""

import os
from pathlib import Path

from taskrun import task

_marks = os.environ.get("TASKRUN_TEST_IMPORT_MARKS")
if _marks:
    with Path(_marks).open("a") as out:
        out.write(f"{os.environ.get('AWS_LAMBDA_FUNCTION_NAME')}\n")


@task("marks/noop", timeout=5)
def noop() -> None:
    """Do nothing (the module is here for its import)."""
