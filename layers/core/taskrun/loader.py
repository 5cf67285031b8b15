"""Finds task code: every module in each tasks directory is imported, which registers its tasks."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


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
    loaded = []
    for directory in directories:
        if not directory.is_dir():
            raise FileNotFoundError(f"tasks directory {directory} does not exist")
        path = str(directory.resolve())
        if path not in sys.path:
            sys.path.insert(0, path)
        for name in task_modules(directory):
            importlib.import_module(name)
            loaded.append(name)
    return loaded
