"""What every command group of the `taskrun` command shares: the Typer apps, the options,
the configured API client and how answers are printed."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from pydantic import BaseModel
from pydantic_core import to_jsonable_python
from rich.console import Console
from rich.table import Table

from taskrun import __version__
from taskrun.client import DEFAULT_URL

if TYPE_CHECKING:
    from taskrun.client import Client

HELP = """The `taskrun` command: run tasks and read runs over the API (`taskrun run`, `runs`, `tasks`,
`schedules`, `keys`), and serve the API on this machine (`taskrun local`).

It talks to TASKRUN_URL with TASKRUN_API_KEY (or --url and --key), by default the local
stack at http://127.0.0.1:9477.
"""

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

app = typer.Typer(
    name="taskrun",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
runs_app = typer.Typer(help="Read, wait on and cancel runs.", no_args_is_help=True)
tasks_app = typer.Typer(help="The catalog of tasks.", no_args_is_help=True)
schedules_app = typer.Typer(help="Runs on a timetable.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys (a key with the admin scope).", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
app.add_typer(tasks_app, name="tasks")
app.add_typer(schedules_app, name="schedules")
app.add_typer(keys_app, name="keys")
secrets_app = typer.Typer(
    help="Tasks' secrets: locally in .taskrun/secrets, or with --stack in a stack's SSM parameters.",
    no_args_is_help=True,
)
app.add_typer(secrets_app, name="secrets")
StackOption = Annotated[
    str | None,
    typer.Option("--stack", help="A deployed stack: its SSM parameters /STACK/secrets/ (your AWS credentials)."),
]
SecretsDirOption = Annotated[
    Path, typer.Option("--dir", metavar="DIR", help="The local stack's secrets (taskrun local --secrets).")
]

JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON as it is.")]


class Settings:
    url: str | None = None
    key: str | None = None


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"taskrun: {message}", markup=False)
    raise typer.Exit(code)


@contextmanager
def api() -> Iterator[Client]:
    """A client of the configured API; its errors end the command with one line. (The client
    and httpx load here, with the first command that calls the API: `taskrun local` has
    no use for them.)"""
    import httpx

    from taskrun.client import Client, ProblemError, TaskrunError, Unauthorized

    try:
        with Client(Settings.url, Settings.key) as client:
            yield client
    except Unauthorized as error:
        given = "the key given was refused" if Settings.key else "no API key was given"
        fail(f"{error}; {given}: pass --key, or set TASKRUN_API_KEY")
    except ProblemError as error:
        fail(str(error))
    except httpx.ConnectError:
        url = Settings.url or os.environ.get("TASKRUN_URL") or DEFAULT_URL
        hint = " (is `taskrun local` running?)" if url.rstrip("/") == DEFAULT_URL else ""
        fail(f"cannot reach {url}{hint}")
    except httpx.TimeoutException:
        fail("the API did not answer in time")
    except (httpx.HTTPError, TaskrunError) as error:
        fail(str(error))


def table(first: str, *others: str) -> Table:
    """A plain table whose first column (an id to copy) is never cut."""
    shown = Table(box=None)
    shown.add_column(first, no_wrap=True, min_width=30)
    for name in others:
        shown.add_column(name)
    return shown


def print_table(shown: Table) -> None:
    """A table as a person reads it on a terminal; elsewhere (a pipe, a file) as lines of
    tab-separated cells under a header line, never wrapped, for `cut` and `awk`."""
    if out.is_terminal:
        out.print(shown)
        return
    columns = shown.columns
    print("\t".join(str(column.header) for column in columns))
    for row in zip(*(column.cells for column in columns), strict=True):
        print("\t".join(str(cell).replace("\t", " ").replace("\n", " ") for cell in row))


def print_json(value: Any) -> None:
    """Any answer as JSON: a model or a list of them as the API sent it."""
    out.print(json.dumps(to_jsonable_python(_dumped(value)), indent=2, ensure_ascii=False), markup=False)


def _dumped(value: Any) -> Any:
    """Models as their JSON data, through their own serializer (built on first use: the
    models defer it, and pydantic_core's own encoder does not build it)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_dumped(item) for item in value]
    if isinstance(value, dict):
        return {key: _dumped(item) for key, item in value.items()}
    return value


def _version(shown: bool) -> None:
    if shown:
        out.print(f"taskrun {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    url: Annotated[
        str | None, typer.Option(envvar="TASKRUN_URL", help=f"The API's address (default {DEFAULT_URL}).")
    ] = None,
    key: Annotated[str | None, typer.Option(envvar="TASKRUN_API_KEY", help="The API key.", show_default=False)] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    Settings.url, Settings.key = url, key


ARG_HELP = (
    "An argument, name=value (repeatable), read by the parameter's type: a text parameter takes"
    " the value as it is (name=123 is the text 123); a number, boolean, list or object is read as"
    " JSON (count=3, tags='[\"a\"]'); a parameter the task does not type, as JSON when it is JSON. A value"
    " that cannot be the parameter's type is refused before anything is sent (exit 2)."
)


def parse_arguments(
    pairs: list[str], json_file: str | None, parameters: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Arguments from a JSON file (or - for stdin) and then `name=value` pairs, each value read
    by its parameter's type in `parameters` (the task's JSON Schema): kept as text where the
    parameter takes text and the value read as JSON would not fit it (`name=123` for a str),
    else read as JSON when it is JSON (`count=3`, `tags=["a"]`) and as text otherwise."""
    arguments: dict[str, Any] = {}
    if json_file:
        try:
            text = sys.stdin.read() if json_file == "-" else Path(json_file).read_text()
            loaded = json.loads(text)
        except (OSError, ValueError) as error:
            fail(f"--json-args {json_file}: {error}", 2)
        if not isinstance(loaded, dict):
            fail(f"--json-args {json_file}: the file must hold a JSON object", 2)
        arguments.update(loaded)
    for pair in pairs:
        name, found, text = pair.partition("=")
        if not found or not name:
            fail(f"--arg {pair!r}: write it as name=value", 2)
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        accepted = _types_of(parameters or {}, name)
        fits = _fits(value, accepted)
        if accepted and "string" not in accepted and not fits:
            fail(f"--arg {pair!r}: {name} takes {_in_words(accepted)}", 2)
        keep_text = "string" in accepted and not fits
        arguments[name] = text if keep_text else value
    return arguments


def _fits(value: Any, accepted: set[str]) -> bool:
    """Whether the API would take `value` for a parameter of these JSON types: it reads
    arguments strictly (true or false for a boolean, no "5" for a number), a whole number
    being a number too."""
    kind = _json_type(value)
    return kind in accepted or (kind == "integer" and "number" in accepted)


TYPE_WORDS = {
    "boolean": "true or false",
    "integer": "a whole number (count=3)",
    "number": "a number (ratio=2.5)",
    "array": 'a list, as JSON (tags=\'["a", "b"]\')',
    "object": "an object, as JSON (options='{\"key\": 1}')",
    "null": "null",
}


def _in_words(accepted: set[str]) -> str:
    """The JSON types a parameter takes, as a person writes them after `name=`."""
    kinds = [kind for kind in TYPE_WORDS if kind in accepted and not (kind == "number" and "integer" in accepted)]
    return " or ".join(TYPE_WORDS[kind] for kind in kinds)


def _types_of(schema: dict[str, Any], name: str) -> set[str]:
    """The JSON types a parameter's schema accepts (empty: not said, or not known)."""
    definitions = schema.get("$defs") or {}

    def types(node: Any, depth: int = 0) -> set[str]:
        if not isinstance(node, dict) or depth > 8:
            return set()
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.startswith("#/$defs/"):
            return types(definitions.get(reference.removeprefix("#/$defs/")), depth + 1)
        declared = node.get("type")
        found = {declared} if isinstance(declared, str) else {str(kind) for kind in declared or []}
        if "integer" in found:
            found.add("number")
        for values in (node.get("enum") or [], [node["const"]] if "const" in node else []):
            found |= {_json_type(value) for value in values}
        for key in ("anyOf", "oneOf", "allOf"):
            for member in node.get(key) or []:
                found |= types(member, depth + 1)
        return found

    return types((schema.get("properties") or {}).get(name))


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    kinds = {float: "number", str: "string", list: "array", dict: "object", type(None): "null"}
    return kinds.get(type(value), "object")


def arguments_for(client: Client, task_id: str, pairs: list[str], json_file: str | None) -> dict[str, Any]:
    """A task's arguments from `--json-args` and `--arg` pairs, the pairs read by the task's
    parameter schema (asked for only when there are pairs)."""
    return parse_arguments(pairs, json_file, _parameters_of(client, task_id) if pairs else None)


def _parameters_of(client: Client, task_id: str) -> dict[str, Any] | None:
    """The task's parameter schema, to read `--arg` values by; None when it cannot be read
    (then the run's own answer says what is wrong)."""
    import httpx

    from taskrun.client import ProblemError

    try:
        return client.task(task_id).parameters
    except (ProblemError, httpx.HTTPError):
        return None
