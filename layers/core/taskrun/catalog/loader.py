"""Finds task code: every module in each tasks directory is imported, which registers its tasks.

In local mode a module edited while the stack runs may no longer import. The stack keeps
the last version of each module file that did import, in a folder named by
TASKRUN_KEPT_MODULES. A module that does not import is then imported as that version, so
every other task goes on as before and the module's own tasks stay in the catalog, but a run
of them is refused with the module's problem, which names the file and line, until the file
imports again. A module that never imported is left out, its problem kept, so that a lookup
of one of its tasks can say why it is not known. Elsewhere (on AWS) a module that does not
import is an error, as it always was.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

KEPT_MODULES = "TASKRUN_KEPT_MODULES"


@dataclass(frozen=True)
class ModuleProblem:
    """Why a task module does not import: its file as shown (relative to its tasks
    directory's parent), the line, and the error."""

    module: str
    file: str
    line: int | None
    error: str  # `ModuleNotFoundError: No module named 'requestz'`

    def __str__(self) -> str:
        return f"{self.file}{f' line {self.line}' if self.line else ''}: {self.error}"


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


def load_task_dirs(directories: list[Path], kept: Path | None = None) -> list[str]:
    """Import every module of every directory, once; return the module names imported. With
    `kept` (by default the folder TASKRUN_KEPT_MODULES names, if any), a module that does not
    import is kept or left out as above."""
    kept = kept or (Path(os.environ[KEPT_MODULES]) if KEPT_MODULES in os.environ else None)
    loaded = []
    for directory in directories:
        if not directory.is_dir():
            raise FileNotFoundError(f"tasks directory {directory} does not exist")
        path = str(directory.resolve())
        if path not in sys.path:
            sys.path.insert(0, path)
        for name in task_modules(directory):
            if kept is None or name in sys.modules:
                importlib.import_module(name)
            elif not _import_or_keep(name, directory, kept, directories):
                continue  # it never imported: its tasks are not known
            loaded.append(name)
    return loaded


def _import_or_keep(name: str, directory: Path, kept: Path, directories: list[Path]) -> bool:
    """Import a module; if it does not import, the kept version of its file in its place,
    its tasks marked with the problem. Whether the module is loaded."""
    from taskrun.catalog.registry import catalog

    before = catalog.task_ids()
    try:
        importlib.import_module(name)
        catalog.mark_loaded(name)
        return True
    except Exception as error:  # whatever a module raises as it imports
        sys.modules.pop(name, None)
        catalog.forget(catalog.task_ids() - before)  # what it registered before it failed
        file, copy = module_file(directory, name), kept / f"{name}.py"
        problem = problem_of(name, error, file, directories)
        if not (file.name == f"{name}.py" and copy.is_file()):
            catalog.mark_unloaded(problem)
            return False
    run_module(name, file, copy.read_text())
    catalog.mark_broken(catalog.task_ids() - before, str(problem))
    return True


def module_file(directory: Path, name: str) -> Path:
    """The file of a task module: `name.py`, or a package's `__init__.py`."""
    file = directory.resolve() / f"{name}.py"
    return file if file.is_file() else directory.resolve() / name / "__init__.py"


def run_module(name: str, file: Path, text: str) -> None:
    """Import `text` as the module `name` of `file` (its relative paths, tracebacks and task
    ids as the file's own)."""
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(file))
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(file)
    sys.modules[name] = module
    try:
        exec(compile(text, str(file), "exec"), module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise


def problem_of(name: str, error: BaseException, file: Path, directories: list[Path]) -> ModuleProblem:
    """What is wrong with a module, and where: `user_tasks/noisy.py line 12: SyntaxError: ...`."""
    from taskrun.results.tasklogs import shown_path

    line = error.lineno if isinstance(error, SyntaxError) else None
    if line is None:
        frames = [frame for frame in traceback.extract_tb(error.__traceback__) if Path(frame.filename) == file]
        line = frames[-1].lineno if frames else None
    message = error.msg if isinstance(error, SyntaxError) else str(error)
    return ModuleProblem(name, shown_path(str(file), directories), line, f"{type(error).__name__}: {message}"[:400])
