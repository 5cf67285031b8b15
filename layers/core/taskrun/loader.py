"""Finds task code: every module in each tasks directory is imported, which registers its tasks.

In local mode a module edited while the stack runs may no longer import. The stack then
names it in a file of kept modules (TASKRUN_KEPT_MODULES): each one's problem, and the
last version of it that did import. That version is imported in its place, so every other
task goes on as before and the module's own tasks stay in the catalog, but a run of them is
refused with the problem, which names the file and line, until the file imports again. A
module that never imported is left out.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

KEPT_MODULES = "TASKRUN_KEPT_MODULES"


def task_modules(directory: Path) -> list[str]:
    """Module names in a directory: `*.py` files and packages, not private ones."""
    names = []
    for entry in sorted(directory.iterdir()):
        if entry.name.startswith(("_", ".")):
            continue
        if entry.suffix == ".py":
            names.append(entry.stem)
        elif entry.is_dir() and (entry / "__init__.py").exists():
            names.append(entry.name)
    return names


def load_task_dirs(directories: list[Path]) -> list[str]:
    """Import every module of every directory, once; return the module names imported."""
    kept = kept_modules()
    loaded = []
    for directory in directories:
        if not directory.is_dir():
            raise FileNotFoundError(f"tasks directory {directory} does not exist")
        path = str(directory.resolve())
        if path not in sys.path:
            sys.path.insert(0, path)
        for name in task_modules(directory):
            entry = kept.get(name)
            if entry is None:
                importlib.import_module(name)
            elif name not in sys.modules and entry.get("source"):
                _import_kept(name, entry)
            elif name not in sys.modules:
                continue  # it never imported: its tasks are not known
            loaded.append(name)
    return loaded


def kept_modules(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The modules that do not import now, as the local stack names them (none elsewhere)."""
    path = path or os.environ.get(KEPT_MODULES)
    if not path:
        return {}
    try:
        kept: dict[str, dict[str, Any]] = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return kept


def _import_kept(name: str, entry: dict[str, Any]) -> None:
    """Import the last version of a module that imported, as the module of its own file (so
    that its relative paths, its tracebacks and its tasks' ids are as they were), and mark
    the tasks it registers with the module's problem."""
    from taskrun.catalog import catalog

    before = {definition.task_id for definition in catalog.all()}
    spec = importlib.util.spec_from_loader(name, loader=None, origin=entry["file"])
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__file__ = entry["file"]
    sys.modules[name] = module
    try:
        exec(compile(Path(entry["source"]).read_text(), entry["file"], "exec"), module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    added = {definition.task_id for definition in catalog.all()} - before
    catalog.mark_broken(added, entry["problem"])
