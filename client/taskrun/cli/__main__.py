"""`python -m taskrun.cli`: the `taskrun` command (guarded: local mode's sandboxes import the
program's main module again, as multiprocessing does)."""

import sys

from taskrun.cli import main

if __name__ == "__main__":
    sys.exit(main())
