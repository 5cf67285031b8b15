"""`taskrun tasks`: the catalog, with each task's parameters."""

from __future__ import annotations

import json
from typing import Any

from taskrun.cli.base import (
    JsonOption,
    api,
    err,
    out,
    print_json,
    print_table,
    table,
    tasks_app,
)


@tasks_app.command("list", epilog="Example: taskrun tasks list")
def tasks_list(as_json: JsonOption = False) -> None:
    """Every task, with its type and what it does."""
    with api() as client:
        catalog = client.catalog()
    if as_json:
        print_json(catalog.tasks)
        return
    shown = table("task", "type", "description")
    for task in catalog.tasks:
        about = task.description.splitlines()[0] if task.description else ""
        if task.problem:
            about = f"its module does not import: {task.problem}" + (f"; {about}" if about else "")
        shown.add_row(task.task_id, task.task_type.value, about)
    print_table(shown)
    for problem in catalog.unloaded_modules:
        where = f"{problem.file} line {problem.line}" if problem.line else problem.file
        err.print(f"not listed: {where} does not import ({problem.error})", markup=False)


@tasks_app.command("show", epilog="Example: taskrun tasks show examples/greet")
def tasks_show(task_id: str, as_json: JsonOption = False) -> None:
    """One task: its parameters as a table, its output and revisions."""
    with api() as client:
        task = client.task(task_id)
    if as_json:
        print_json(task)
        return
    out.print(f"{task.task_id} ({task.task_type.value})", markup=False)
    if task.problem:
        out.print(f"its module does not import, so it cannot run: {task.problem}", markup=False)
    if task.description:
        out.print(task.description, markup=False)
    required = set(task.parameters.get("required", []))
    shown = table("parameter", "type", "required", "default", "limits", "description")
    for name, schema in task.parameters.get("properties", {}).items():
        default = json.dumps(schema["default"]) if "default" in schema else ""
        needed = "yes" if name in required else ""
        shown.add_row(name, _type_of(schema), needed, default, _limits_of(schema), schema.get("description", ""))
    print_table(shown)
    out.print(f"output: {_type_of(task.output) or 'any'}", markup=False)
    revisions = ", ".join(f"{revision.revision} ({revision.weight}%)" for revision in task.revisions)
    out.print(f"revisions: {revisions}" + (f" · timeout {task.timeout} s" if task.timeout else ""), markup=False)


LIMITS = {  # a JSON Schema keyword, and how a person reads it
    "minimum": ">= {}",
    "exclusiveMinimum": "> {}",
    "maximum": "<= {}",
    "exclusiveMaximum": "< {}",
    "multipleOf": "a multiple of {}",
    "minLength": "at least {} characters",
    "maxLength": "at most {} characters",
    "pattern": "matching {}",
    "minItems": "at least {} items",
    "maxItems": "at most {} items",
}


def _limits_of(schema: dict[str, Any]) -> str:
    """A parameter's limits (its range, length, pattern, allowed values), as words; those of
    an Optional parameter's non-null member too."""
    members = [schema, *(schema.get("anyOf") or schema.get("oneOf") or [])]
    said: list[str] = []
    for member in members:
        said += [words.format(member[keyword]) for keyword, words in LIMITS.items() if keyword in member]
        if "enum" in member:
            said.append("one of " + ", ".join(json.dumps(value) for value in member["enum"]))
    return "; ".join(said)


def _type_of(schema: dict[str, Any]) -> str:
    if "type" in schema:
        kind = schema["type"]
        return " | ".join(kind) if isinstance(kind, list) else str(kind)
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        return " | ".join(_type_of(option) for option in options)
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    return ""
