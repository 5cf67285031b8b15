"""The `taskrun` command: run tasks and read runs over the API (`taskrun run`, `runs`, `tasks`,
`schedules`, `keys`), and serve the API on this machine (`taskrun local`).

It talks to TASKRUN_URL with TASKRUN_API_KEY (or --url and --key), by default the local
stack at http://127.0.0.1:9477.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from pydantic_core import to_jsonable_python
from rich.console import Console
from rich.table import Table

from taskrun import __version__
from taskrun.client import DEFAULT_URL, Client, ProblemError, TaskrunError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

app = typer.Typer(
    name="taskrun",
    help=__doc__,
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
    """A client of the configured API; its errors end the command with one line."""
    try:
        with Client(Settings.url, Settings.key) as client:
            yield client
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
    out.print(json.dumps(to_jsonable_python(value), indent=2, ensure_ascii=False), markup=False)


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


# ------------------------------------------------------------------------------ run


def parse_arguments(pairs: list[str], json_file: str | None) -> dict[str, Any]:
    """Arguments from a JSON file (or - for stdin) and then `name=value` pairs, a value read as
    JSON when it is JSON (`count=3`, `tags=["a"]`) and as text otherwise (`name=Ada`)."""
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
            arguments[name] = json.loads(text)
        except ValueError:
            arguments[name] = text
    return arguments


@contextmanager
def spinner(message: str, detail: Callable[[], str] | None = None) -> Iterator[None]:
    """A live spinner with the time spent, on a terminal; nothing otherwise. `detail`, if
    given, is asked every second for a few words more (a run's progress)."""
    if not err.is_terminal:
        yield
        return
    started = time.monotonic()
    with err.status(message) as status:
        stop = threading.Event()

        def tick() -> None:
            shown, asked = "", 0.0
            while not stop.wait(0.1):
                if detail is not None and time.monotonic() - asked >= 1.0:
                    asked = time.monotonic()
                    with suppress(Exception):  # the spinner goes on without it
                        shown = detail()
                status.update(f"{message} {time.monotonic() - started:.1f}s {shown}".rstrip())

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            stop.set()
            ticker.join()


def show_run(run: Any) -> None:
    """A run as a person reads it: the result on stdout, how it went on stderr."""
    took = f" in {run.duration_ms} ms" if run.duration_ms is not None else ""
    if run.is_successful:
        if run.result_url:
            out.print(run.result_url, markup=False)
        elif isinstance(run.result, str):
            out.print(run.result, markup=False)
        else:
            print_json(run.result)
        err.print(f"✓ {run.task_id} succeeded{took} · {run.run_id}", markup=False)
    elif run.is_done:
        err.print(f"✗ {run.task_id} {run.status.value}{took} · {run.run_id}", markup=False)
        if run.error is not None:
            kind = run.error.exception_type or run.error.type.value
            err.print(f"  {kind}: {run.error.message}", markup=False)
            for frame in run.error.frames or []:
                err.print(f"    {frame.file}:{frame.line} in {frame.function}", markup=False)
        err.print(f"  logs: taskrun runs logs {run.run_id}", markup=False)
    else:
        err.print(f"… {run.task_id} is {run.status.value} · {run.run_id}", markup=False)
        err.print(f"  wait on it: taskrun runs get {run.run_id} --wait", markup=False)


def _started_answer(ran: Any, waited: bool, as_json: bool) -> NoReturn:
    """A run just started: its JSON, or how it went when waited for, else its id (stdout)
    and how to wait on it (stderr); exit as `exit_code` says when waited for, else 0."""
    if as_json:
        print_json(ran)
    elif waited:
        show_run(ran)
    else:
        out.print(ran.run_id, markup=False)
        err.print(f"{ran.task_id} is {ran.status.value}; wait on it: taskrun runs get {ran.run_id} --wait")
    raise typer.Exit(exit_code(ran) if waited else 0)


def exit_code(run: Any) -> int:
    """0 when the run succeeded, 1 when it ended otherwise, 2 when it has not ended yet."""
    return 0 if run.is_successful else 1 if run.is_done else 2


@app.command(
    epilog="Example: taskrun run examples/greet --arg name=Ada --wait",
)
def run(
    task_id: Annotated[str, typer.Argument(help="The task to run, such as examples/greet.")],
    arg: Annotated[list[str] | None, typer.Option("--arg", "-a", help="An argument, name=value (repeatable).")] = None,
    json_args: Annotated[
        str | None, typer.Option("--json-args", help="A JSON file of arguments (- reads stdin).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the run to end.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait at most.", min=0)] = 600,
    revision: Annotated[str | None, typer.Option(help="Run this revision of the task.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag the run (repeatable, at most 10).")] = None,
    delay: Annotated[float | None, typer.Option(help="Start the run this many seconds from now.", min=0)] = None,
    ttl: Annotated[float | None, typer.Option(help="Seconds: a run not started by then ends expired.", min=0)] = None,
    concurrency_key: Annotated[
        str | None, typer.Option("--concurrency-key", help="Count the run against the task's per-key limit.")
    ] = None,
    logs: Annotated[
        bool, typer.Option("--logs", help="Print the run's logs as they come (on stderr), then how it ended.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Run a task; exit 0 only when the run succeeded (1: it ended otherwise; 2: still going)."""
    arguments = parse_arguments(arg or [], json_args)
    controls: dict[str, Any] = {"tags": tag, "delay": delay, "ttl": ttl, "concurrency_key": concurrency_key}
    with api() as client:
        if logs or (wait and err.is_terminal):  # the run's id first: to follow it, or show its progress
            started = client.run(task_id, arguments, wait=None, revision=revision, **controls)
            if logs:
                for part in client.follow_logs(started.run_id):
                    sys.stderr.write(part.text)
                    sys.stderr.flush()
            with spinner(f"running {task_id}", progress_of(client, started.run_id)):
                ran = client.wait_for(started.run_id, timeout) if wait or logs else started
        else:
            ran = client.run(task_id, arguments, wait=timeout if wait else None, revision=revision, **controls)
    _started_answer(ran, wait or logs, as_json)


def progress_of(client: Any, run_id: str) -> Callable[[], str]:
    """How far a run has come, in a few words (`3/10 30% fetching`), for a spinner."""

    def detail() -> str:
        progress = client.get_run(run_id).progress
        if progress is None:
            return ""
        done = f"{progress.done:g}" + (f"/{progress.total:g} {progress.percent:g}%" if progress.total else "")
        return f"· {done} {progress.message or ''}".rstrip()

    return detail


# ------------------------------------------------------------------------------ runs


@runs_app.command("list", epilog="Example: taskrun runs list --task examples/greet --status failed")
def runs_list(
    task: Annotated[str | None, typer.Option("--task", help="Only this task's runs.")] = None,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only runs with this tag.")] = None,
    schedule: Annotated[str | None, typer.Option("--schedule", help="Only the runs this schedule started.")] = None,
    triggered_by: Annotated[
        str | None, typer.Option("--triggered-by", help="Only runs started so: api, schedule, step_functions, mcp.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many runs.", min=1)] = 20,
    as_json: JsonOption = False,
) -> None:
    """Runs, newest first."""
    filters = {"status": status, "tag": tag, "schedule_id": schedule, "triggered_by": triggered_by}
    with api() as client:
        listed = client.list_runs(task_id=task, page_size=min(limit, 100), **filters)
        found = list(islice(listed, limit))
    if as_json:
        print_json(found)
        return
    shown = table("run", "task", "status", "started", "ms")
    for item in found:
        started = item.created_at.strftime("%Y-%m-%d %H:%M:%S")
        shown.add_row(item.run_id, item.task_id, item.status.value, started, str(item.duration_ms or ""))
    print_table(shown)


@runs_app.command("get", epilog="Example: taskrun runs get run_01m8496zv092capcb6htkybrew --wait")
def runs_get(
    run_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the run to end.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait at most.", min=0)] = 600,
    as_json: JsonOption = False,
) -> None:
    """One run; with --wait, once it has ended. The exit code is as `taskrun run`'s."""
    with api() as client, spinner(f"waiting for {run_id}", progress_of(client, run_id)) if wait else nullcontext():
        found = client.wait_for(run_id, timeout) if wait else client.get_run(run_id)
    if as_json:
        print_json(found)
    else:
        show_run(found)
    raise typer.Exit(exit_code(found))


@runs_app.command("cancel", epilog="Example: taskrun runs cancel run_01m8496zv092capcb6htkybrew")
def runs_cancel(run_id: str, as_json: JsonOption = False) -> None:
    """Cancel a pending or running run."""
    with api() as client:
        cancelled = client.cancel(run_id)
    if as_json:
        print_json(cancelled)
    else:
        out.print(f"{cancelled.run_id} {cancelled.status.value}", markup=False)


@runs_app.command("rerun", epilog="Example: taskrun runs rerun run_01m8496zv092capcb6htkybrew --current")
def runs_rerun(
    run_id: str,
    current: Annotated[
        bool, typer.Option("--current", help="Pick the revision by the traffic weights, not the first run's.")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for the new run to end.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait at most.", min=0)] = 600,
    as_json: JsonOption = False,
) -> None:
    """Run a run's task again with the same arguments; exit codes as `taskrun run`'s."""
    with api() as client, spinner(f"re-running {run_id}"):
        ran = client.rerun(run_id, revision="current" if current else None, wait=timeout if wait else None)
    _started_answer(ran, wait, as_json)


@runs_app.command("batch", epilog="Example: taskrun runs batch requests.json --idempotency-key nightly-2026-12-03")
def runs_batch(
    file: Annotated[
        str, typer.Argument(help="A JSON file: a list of start requests, or {runs: [...]} (- reads stdin).")
    ],
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Send the batch once under this key.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Start up to 100 runs at once; each line says its run or why it was refused. Exit 1
    when any was refused."""
    try:
        loaded = json.loads(sys.stdin.read() if file == "-" else Path(file).read_text())
    except (OSError, ValueError) as error:
        fail(f"{file}: {error}", 2)
    requests = loaded.get("runs") if isinstance(loaded, dict) else loaded
    if not isinstance(requests, list):
        fail(f"{file}: the file must hold a list of start requests (or an object with `runs`)", 2)
    with api() as client:
        items = client.batch(requests, idempotency_key=idempotency_key)
    if as_json:
        print_json(items)
    else:
        for index, item in enumerate(items):
            if item.run is not None:
                out.print(f"{index} {item.status} {item.run.run_id} {item.run.status.value}", markup=False)
            else:
                detail = (item.problem or {}).get("detail", "")
                places = ", ".join(error["location"] for error in (item.problem or {}).get("errors", []))
                out.print(f"{index} {item.status} {detail}" + (f" ({places})" if places else ""), markup=False)
    raise typer.Exit(0 if all(item.run is not None for item in items) else 1)


@runs_app.command("history", epilog="Example: taskrun runs history run_01m8496zv092capcb6htkybrew")
def runs_history(run_id: str, as_json: JsonOption = False) -> None:
    """A flow run's steps."""
    with api() as client:
        steps = list(client.history(run_id))
    if as_json:
        print_json(steps)
        return
    shown = table("step", "type", "status", "attempts", "error")
    for step in steps:
        shown.add_row(step.name, step.type, step.status, str(step.attempts or ""), step.error or "")
    print_table(shown)


@runs_app.command("logs", epilog="Example: taskrun runs logs run_01m8496zv092capcb6htkybrew --follow")
def runs_logs(
    run_id: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Print lines as they come, until the run ends.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """What a run's task printed or logged, and the traceback of what it raised."""
    with api() as client:
        if follow:
            follow_logs(client, run_id, as_json)
            return
        logs = client.logs(run_id)
    if as_json:
        print_json(logs)
        return
    if logs.truncated:
        err.print("(earlier output was left out; the last 64 KB follow)")
    sys.stdout.write(logs.text)
    sys.stdout.flush()


def follow_logs(client: Any, run_id: str, as_json: bool = False) -> None:
    """Print a run's logs as they come (each answer as a JSON line with --json), until it ends."""
    for logs in client.follow_logs(run_id):
        if as_json:
            sys.stdout.write(logs.model_dump_json() + "\n")
        else:
            if logs.truncated:
                err.print("(output was left out here: it came faster than it was read)")
            sys.stdout.write(logs.text)
        sys.stdout.flush()


# ------------------------------------------------------------------------------ tasks


@tasks_app.command("list", epilog="Example: taskrun tasks list")
def tasks_list(as_json: JsonOption = False) -> None:
    """Every task, with its type and what it does."""
    with api() as client:
        found = client.tasks()
    if as_json:
        print_json(found)
        return
    shown = table("task", "type", "description")
    for task in found:
        shown.add_row(task.task_id, task.task_type.value, task.description.splitlines()[0] if task.description else "")
    print_table(shown)


@tasks_app.command("show", epilog="Example: taskrun tasks show examples/greet")
def tasks_show(task_id: str, as_json: JsonOption = False) -> None:
    """One task: its parameters as a table, its output and revisions."""
    with api() as client:
        task = client.task(task_id)
    if as_json:
        print_json(task)
        return
    out.print(f"{task.task_id} ({task.task_type.value})", markup=False)
    if task.description:
        out.print(task.description, markup=False)
    required = set(task.parameters.get("required", []))
    shown = table("parameter", "type", "required", "default", "description")
    for name, schema in task.parameters.get("properties", {}).items():
        default = json.dumps(schema["default"]) if "default" in schema else ""
        shown.add_row(name, _type_of(schema), "yes" if name in required else "", default, schema.get("description", ""))
    print_table(shown)
    out.print(f"output: {_type_of(task.output) or 'any'}", markup=False)
    revisions = ", ".join(f"{revision.revision} ({revision.weight}%)" for revision in task.revisions)
    out.print(f"revisions: {revisions}" + (f" · timeout {task.timeout} s" if task.timeout else ""), markup=False)


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


# ------------------------------------------------------------------------------ schedules


@schedules_app.command("list", epilog="Example: taskrun schedules list")
def schedules_list(as_json: JsonOption = False) -> None:
    """Every schedule and when it runs next."""
    with api() as client:
        found = list(client.schedules())
    if as_json:
        print_json(found)
        return
    shown = table("schedule", "task", "expression", "state", "next run")
    for item in found:
        following = item.next_run_at.strftime("%Y-%m-%d %H:%M:%S") if item.next_run_at else ""
        shown.add_row(item.schedule_id, item.task_id, item.expression, item.state.value, following)
    print_table(shown)


@schedules_app.command(
    "create", epilog="Example: taskrun schedules create examples/greet 'cron(0 9 * * ? *)' --arg name=Ada"
)
def schedules_create(
    task_id: str,
    expression: Annotated[str, typer.Argument(help="cron(...), rate(...) or at(...).")],
    arg: Annotated[list[str] | None, typer.Option("--arg", "-a", help="An argument, name=value (repeatable).")] = None,
    json_args: Annotated[str | None, typer.Option("--json-args", help="A JSON file of arguments.")] = None,
    timezone: Annotated[str, typer.Option(help="The expression's IANA time zone.")] = "UTC",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag each of its runs (repeatable).")] = None,
    overlap: Annotated[
        str | None, typer.Option(help="allow (the default) or skip: skip a firing while the last run goes on.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="What the schedule is for.")] = None,
    webhook_url: Annotated[str | None, typer.Option("--webhook-url", help="Each run's webhook.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Schedule a task."""
    arguments = parse_arguments(arg or [], json_args)
    fields = {"tags": tag, "overlap": overlap, "description": description, "webhook_url": webhook_url}
    with api() as client:
        made = client.create_schedule(task_id, expression, arguments=arguments, timezone=timezone, **fields)
    if as_json:
        print_json(made)
    else:
        out.print(made.schedule_id, markup=False)
        err.print(f"next run: {made.next_run_at}", markup=False)


@schedules_app.command("get", epilog="Example: taskrun schedules get sch_01m8496zv092capcb6htkybrew")
def schedules_get(schedule_id: str) -> None:
    """One schedule, as JSON."""
    with api() as client:
        print_json(client.get_schedule(schedule_id))


@schedules_app.command("pause", epilog="Example: taskrun schedules pause sch_01m8496zv092capcb6htkybrew")
def schedules_pause(schedule_id: str) -> None:
    """Stop a schedule firing until it is resumed."""
    with api() as client:
        out.print(f"{schedule_id} {client.update_schedule(schedule_id, enabled=False).state.value}")


@schedules_app.command("resume", epilog="Example: taskrun schedules resume sch_01m8496zv092capcb6htkybrew")
def schedules_resume(schedule_id: str) -> None:
    """Let a paused schedule fire again."""
    with api() as client:
        out.print(f"{schedule_id} {client.update_schedule(schedule_id, enabled=True).state.value}")


@schedules_app.command("run", epilog="Example: taskrun schedules run sch_01m8496zv092capcb6htkybrew")
def schedules_run(schedule_id: str) -> None:
    """Run a schedule's task now; prints the run's id."""
    with api() as client:
        out.print(client.execute_schedule(schedule_id).run_id, markup=False)


@schedules_app.command("delete", epilog="Example: taskrun schedules delete sch_01m8496zv092capcb6htkybrew")
def schedules_delete(schedule_id: str) -> None:
    """Delete a schedule (its runs are kept)."""
    with api() as client:
        client.delete_schedule(schedule_id)
    out.print(f"{schedule_id} deleted", markup=False)


# ------------------------------------------------------------------------------ keys


@keys_app.command(
    "create",
    epilog=(
        "Example: taskrun keys create --name reports-bot --scope runs:read --scope runs:write --task 'reports/*'"
        "  (or --table T on a new stack)"
    ),
)
def keys_create(
    name: Annotated[str, typer.Option(help="What the key is for.")] = "",
    admin: Annotated[bool, typer.Option("--admin", help="Every scope, managing keys included.")] = False,
    scope: Annotated[
        list[str] | None,
        typer.Option(
            help="A scope (repeatable): runs:write, runs:read, schedules:write, schedules:read, admin;"
            " by default all but admin."
        ),
    ] = None,
    task: Annotated[
        list[str] | None,
        typer.Option(help="Limit the key to a task id or a prefix ending in * (repeatable); by default every task."),
    ] = None,
    table: Annotated[
        str | None,
        typer.Option(
            help="Write the key straight into this KeysTable with your AWS credentials (a new stack's first key)."
        ),
    ] = None,
) -> None:
    """Make a key; it is printed only now."""
    from taskrun.access import ALL_SCOPES, DEFAULT_SCOPES

    scopes: list[str] = list(ALL_SCOPES) if admin else list(scope or DEFAULT_SCOPES)
    if unknown := sorted(set(scopes) - set(ALL_SCOPES)):
        fail(f"unknown scope {unknown[0]!r}: use {', '.join(ALL_SCOPES)}")
    tasks = list(task or [])
    if table:
        key_id, secret = _key_into_table(table, name, scopes, tasks)
    else:
        with api() as client:
            made = client.create_key(name, scopes, tasks)
        key_id, secret = made["key_id"], made["key"]
    err.print(f"key_id: {key_id} (the key is shown only now)", markup=False)
    out.print(secret, markup=False)


def _key_into_table(table: str, name: str, scopes: list[str], tasks: list[str]) -> tuple[str, str]:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError
    from pydantic import ValidationError

    from taskrun.auth import DynamoKeyStore, NewKeyRequest, new_key

    try:
        NewKeyRequest(name=name, tasks=tasks)  # type: ignore[arg-type]  # validated here: the API is not asked
    except ValidationError as error:
        fail(f"not a valid key: {error.errors()[0]['msg']} ({error.errors()[0]['input']!r})")
    secret, record = new_key(name=name, scopes=scopes, tasks=tasks)
    try:
        import boto3  # the user's own AWS configuration, as the AWS CLI reads it

        DynamoKeyStore(table, boto3.session.Session().resource("dynamodb").Table(table)).put(record)
    except NoRegionError:
        fail("no AWS region: set AWS_DEFAULT_REGION, or a region in your AWS profile")
    except NoCredentialsError:
        fail("no AWS credentials: set AWS_PROFILE or run `aws configure`")
    except ClientError as error:
        detail = error.response.get("Error", {})
        fail(f"AWS refused: {detail.get('Code', 'error')}: {detail.get('Message', error)}")
    except (BotoCoreError, ValueError) as error:  # a malformed region makes an endpoint boto3 refuses
        fail(f"AWS: {error}")
    return record.key_id, secret


@keys_app.command("list", epilog="Example: taskrun keys list")
def keys_list(as_json: JsonOption = False) -> None:
    """The keys (never their secrets)."""
    with api() as client:
        found = client.keys()
    if as_json:
        print_json(found)
        return
    shown = table("key", "name", "scopes", "tasks", "created", "revoked")
    for item in found:
        revoked = "revoked" if item["revoked"] else ""
        tasks = " ".join(item.get("tasks") or []) or "every task"
        shown.add_row(item["key_id"], item["name"], " ".join(item["scopes"]), tasks, item["created_at"], revoked)
    print_table(shown)


@keys_app.command("revoke", epilog="Example: taskrun keys revoke key_0123456789abcdef")
def keys_revoke(key_id: str) -> None:
    """Revoke a key: refused within the stack's KeyCacheSeconds (60 s by default)."""
    with api() as client:
        client.revoke_key(key_id)
    out.print(f"{key_id} revoked", markup=False)


# ------------------------------------------------------------------------------ secrets


def _secret_store(stack: str | None, directory: Path) -> Any:
    from taskrun.task_secrets import DirectorySecrets, ParameterSecrets

    if stack is None:
        return DirectorySecrets(directory)
    import boto3  # the user's own AWS configuration, as the AWS CLI reads it

    return ParameterSecrets(f"/{stack}/secrets/", boto3.session.Session().client("ssm"))


def _on_secrets(action: Callable[[], Any]) -> Any:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        return action()
    except ValueError as error:
        fail(str(error), 2)
    except NoCredentialsError:
        fail("no AWS credentials: set AWS_PROFILE or run `aws configure`")
    except NoRegionError:
        fail("no AWS region: set AWS_REGION or run `aws configure`")
    except (BotoCoreError, ClientError, OSError) as error:
        fail(str(error))


@secrets_app.command("set", epilog='Example: printf %s "$STRIPE_KEY" | taskrun secrets set stripe')
def secrets_set(
    name: str,
    value: Annotated[
        str | None, typer.Option(help="The value (else read from stdin, so that it stays out of your history).")
    ] = None,
    stack: StackOption = None,
    directory: SecretsDirOption = Path(".taskrun/secrets"),
) -> None:
    """Set a secret tasks declare (`@task(secrets=[NAME])`); the next runs read it."""
    text = value if value is not None else sys.stdin.read().removesuffix("\n")
    _on_secrets(lambda: _secret_store(stack, directory).put(name, text))
    out.print(f"{name} set", markup=False)


@secrets_app.command("list", epilog="Example: taskrun secrets list")
def secrets_list(stack: StackOption = None, directory: SecretsDirOption = Path(".taskrun/secrets")) -> None:
    """The secrets' names (never their values)."""
    for name in _on_secrets(lambda: _secret_store(stack, directory).names()):
        out.print(name, markup=False)


@secrets_app.command("delete", epilog="Example: taskrun secrets delete stripe")
def secrets_delete(
    name: str, stack: StackOption = None, directory: SecretsDirOption = Path(".taskrun/secrets")
) -> None:
    """Delete a secret; runs of tasks that declare it then fail before they start."""
    if not _on_secrets(lambda: _secret_store(stack, directory).delete(name)):
        fail(f"no secret {name!r}")
    out.print(f"{name} deleted", markup=False)


# ------------------------------------------------------------------------------ local


@app.command(epilog="Example: taskrun local --tasks ./my_tasks")
def local(
    host: Annotated[str, typer.Option(help="The address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="The port to listen on.")] = 9477,
    tasks: Annotated[
        list[Path] | None, typer.Option("--tasks", metavar="DIR", help="Also import every module in DIR (repeatable).")
    ] = None,
    root: Annotated[Path | None, typer.Option(help="The bundle folder holding template.yaml (default: found).")] = None,
    data: Annotated[Path, typer.Option(metavar="DIR", help="Keep every table here across restarts.")] = Path(
        ".taskrun"
    ),
    ephemeral: Annotated[bool, typer.Option(help="Keep nothing: every table lives in memory only.")] = False,
    secrets: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="Tasks' secrets: a directory (a file each) or a file of NAME=value lines."),
    ] = None,
) -> None:
    """Serve the API on this machine, on an in-process AWS emulator."""
    raise typer.Exit(_serve_locally(host, port, tasks or [], root, None if ephemeral else data.resolve(), secrets))


def _serve_locally(
    host: str, port: int, tasks: list[Path], root: Path | None, data_dir: Path | None, secrets: Path | None = None
) -> int:
    try:
        from taskrun.local.stack import LocalStack, bundle_root
    except ModuleNotFoundError as missing:  # the client alone: the emulator is an extra
        fail(f"local: the local stack needs {missing.name}: pip install 'taskrun[local]'", 2)

    for directory in tasks:
        if not directory.is_dir():
            fail(f"tasks directory {directory} does not exist", 2)
    # what the person chose, read before the stack puts its settings into this environment
    key_chosen = bool(os.environ.get("TASKRUN_API_KEY"))
    secret_chosen = bool(os.environ.get("TASKRUN_WEBHOOK_SECRET"))
    try:
        stack = LocalStack(
            root=root or bundle_root(),
            extra_task_dirs=list(tasks),
            api_key=os.environ.get("TASKRUN_API_KEY") or None,
            data_dir=data_dir,
            secrets=secrets,
        )
    except ValueError as error:  # a setting that cannot work, such as a malformed webhook secret
        fail(f"local: could not start: {error}")
    from taskrun.runtime import task_catalog

    try:
        key = stack.start()
        names = ", ".join(definition.task_id for definition in task_catalog().all())
    except Exception as error:  # a task module that does not import, a flow's ASL missing or invalid
        stack.stop()
        fail(f"local: could not start: {type(error).__name__}: {error}")
    try:
        server = stack.serve(host, port)
    except OSError as error:
        stack.stop()
        fail(f"local: cannot listen on {host}:{port}: {error.strerror}")
    bound_host, bound_port = server.server_address[:2]
    say: Callable[[str], None] = lambda line: print(line, flush=True)  # noqa: E731
    say(f"taskrun local: http://{bound_host}:{bound_port}/v1  (template {stack.stack.path})")
    say(f"API docs: http://{bound_host}:{bound_port}/v1/docs")
    if not key_chosen:
        say(f"API key (set TASKRUN_API_KEY to choose one): {key}")
    if not secret_chosen:
        say(f"webhook signing secret (set TASKRUN_WEBHOOK_SECRET to choose one): {stack.webhook_secret}")
    if data_dir is None:
        say("state: in memory only (--ephemeral): nothing is kept after a stop")
    else:
        say(f"state: {data_dir} ({stack.emulator.restored_items} items kept; delete the folder to start afresh)")
    if stack.interrupted_runs:
        say(f"{stack.interrupted_runs} runs cut off by the last stop were ended failed")
    if stack.dispatched_again:
        say(f"{stack.dispatched_again} runs pending at the last stop (never started) were dispatched again")
    if stack.expired_runs:
        say(f"{stack.expired_runs} runs pending at the last stop ended expired (their ttl passed meanwhile)")
    if stack.resumed_deliveries:
        say(f"{stack.resumed_deliveries} webhook deliveries pending from before the stop go on")
    say(f"tasks: {names}")
    say("Ctrl-C stops it.")
    stopped: list[int] = []
    # Handlers of our own: a shell may start a background job with SIGINT ignored. A handler
    # only notes the signal: one that set a threading.Event could find the Event's lock held
    # by the very wait it interrupted, and the stack would never stop.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda number, _: stopped.append(number))
    while not stopped:
        time.sleep(0.2)
    say("taskrun local: stopping")
    stack.stop()
    # Everything is kept by now (the journal is closed); an invocation still under way on a
    # worker thread must not hold the exit, as it would at interpreter shutdown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@app.command(epilog="Example: taskrun mcp > taskrun-mcp.json")
def mcp(
    name: Annotated[str, typer.Option(help="The server's name in the host's configuration.")] = "taskrun",
) -> None:
    """Print what an MCP host (an agent, an IDE, a desktop app) needs to use the API's tasks as
    tools: the /mcp address and the key's header, as the hosts' `mcpServers` JSON."""
    from taskrun.ids import tool_name

    with api() as client:
        tasks = client.tasks()  # the address answers and the key is taken
        url, key = client.url, client.key
    if not key:
        fail("no API key: set TASKRUN_API_KEY (or --key), or run `taskrun local` in this folder")
    tools = [task.task_id for task in tasks if tool_name(task.task_id) is not None]
    server = {"type": "http", "url": f"{url}/mcp", "headers": {"Authorization": f"Bearer {key}"}}
    print(json.dumps({"mcpServers": {name: server}}, indent=2))
    err.print(f"{len(tools)} tasks are tools for this key at {url}/mcp (see docs/mcp.md)", markup=False)


@app.command(epilog="Example: taskrun openapi --check")
def openapi(
    check: Annotated[bool, typer.Option("--check", help="Only say whether docs/openapi.json is current.")] = False,
    root: Annotated[Path | None, typer.Option(help="The bundle folder holding template.yaml.")] = None,
) -> None:
    """Write the API document (docs/openapi.json) from the functions' routes."""
    from taskrun.local.openapi import SNAPSHOT, document, render
    from taskrun.local.stack import bundle_root

    folder = root or bundle_root()
    made = render(document(folder))
    path = folder / SNAPSHOT
    if check:
        if not path.exists() or path.read_text() != made:
            fail(f"{path} is not current: run `taskrun openapi`")
        out.print(f"{path} is current")
        return
    path.write_text(made)
    out.print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    """A command's exit code, never a traceback for a user's mistake."""
    try:
        app(args=argv, prog_name="taskrun", standalone_mode=True)
    except SystemExit as done:
        return int(done.code or 0) if not isinstance(done.code, str) else 1
    return 0
