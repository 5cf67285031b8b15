"""`taskrun run` and `taskrun runs`: start a run, follow it, and read, cancel and rerun runs."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from taskrun.cli.base import (
    ARG_HELP,
    JsonOption,
    api,
    app,
    arguments_for,
    err,
    fail,
    out,
    print_json,
    print_table,
    runs_app,
    table,
)


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
        err.print(f"… {run.task_id} is {run.status.value}{_until(run)} · {run.run_id}", markup=False)
        err.print(f"  wait on it: taskrun runs get {run.run_id} --wait", markup=False)


def _until(run: Any) -> str:
    """When a queued run starts, if it waits for a time (` until 14:05:09 UTC, in 58 s`);
    for one waiting for room in a concurrency limit, that it does."""
    if run.status.value != "queued":
        return ""
    if run.next_attempt_at is None:
        return " for room in its concurrency limit"
    left = (run.next_attempt_at - datetime.now(UTC)).total_seconds()
    return f" until {run.next_attempt_at:%Y-%m-%d %H:%M:%S} UTC, in {max(0, round(left))} s"


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
    arg: Annotated[list[str] | None, typer.Option("--arg", "-a", help=ARG_HELP)] = None,
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
    controls: dict[str, Any] = {"tags": tag, "delay": delay, "ttl": ttl, "concurrency_key": concurrency_key}
    with api() as client:
        arguments = arguments_for(client, task_id, arg or [], json_args)
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
    shown = table("run", "task", "status", "created", "started", "ms")

    def moment(at: datetime | None) -> str:  # empty for a run not started yet (queued, pending)
        return at.strftime("%Y-%m-%d %H:%M:%S") if at is not None else ""

    for item in found:
        cells = (moment(item.created_at), moment(item.started_at), str(item.duration_ms or ""))
        shown.add_row(item.run_id, item.task_id, item.status.value, *cells)
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


runs_app.command("steps", hidden=True)(runs_history)  # the console and the API's lists call them steps


@runs_app.command("callbacks", epilog="Example: taskrun runs callbacks run_01m8496zv092capcb6htkybrew")
def runs_callbacks(run_id: str, as_json: JsonOption = False) -> None:
    """A flow run's callbacks: a waiting one is a decision it waits for (answer it with
    `taskrun runs approve` or `reject`)."""
    with api() as client:
        found = client.callbacks(run_id)
    if as_json:
        print_json(found)
        return
    shown = table("callback", "step", "status", "created")
    for callback in found:
        shown.add_row(callback.callback_id, callback.step, callback.status.value, f"{callback.created_at:%H:%M:%S}")
    print_table(shown)


CallbackOption = Annotated[
    str | None, typer.Option("--callback", help="The callback to answer (by default the one the run waits on).")
]


@runs_app.command("approve", epilog="Example: taskrun runs approve run_01m8496zv092capcb6htkybrew")
def runs_approve(
    run_id: str,
    callback: CallbackOption = None,
    output: Annotated[
        str, typer.Option("--output", help="The answer the flow gets, as JSON.")
    ] = '{"approved": true, "by": "cli"}',
    as_json: JsonOption = False,
) -> None:
    """Complete the callback a flow run waits on with an output (by default an approval)."""
    try:
        answer = json.loads(output)
    except ValueError as error:
        fail(f"--output must be JSON: {error}", 2)
    _answer(run_id, callback, as_json, output=answer)


@runs_app.command("reject", epilog="Example: taskrun runs reject run_01m8496zv092capcb6htkybrew --cause 'over budget'")
def runs_reject(
    run_id: str,
    callback: CallbackOption = None,
    error: Annotated[str, typer.Option("--error", help="The error name the flow's step fails with.")] = "Rejected",
    cause: Annotated[str, typer.Option("--cause", help="Why, in words.")] = "rejected with taskrun runs reject",
    as_json: JsonOption = False,
) -> None:
    """Fail the callback a flow run waits on with an error (by default `Rejected`)."""
    _answer(run_id, callback, as_json, error=error, cause=cause)


def _answer(run_id: str, callback_id: str | None, as_json: bool, **answer: Any) -> None:
    with api() as client:
        if callback_id is None:
            waiting = [callback for callback in client.callbacks(run_id) if callback.status.value == "waiting"]
            if len(waiting) != 1:
                ids = ", ".join(f"{callback.callback_id} ({callback.step})" for callback in waiting)
                fail(f"{run_id} waits on {ids}: say which with --callback" if ids else f"{run_id} waits on no callback")
            callback_id = waiting[0].callback_id
        done = client.answer_callback(run_id, callback_id, **answer)
    if as_json:
        print_json(done)
    else:
        out.print(f"{done.callback_id} ({done.step}) {done.status.value}", markup=False)


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
    if not logs.text:
        so_far = "" if logs.ended else " so far (it has not ended: --follow prints lines as they come)"
        err.print(f"(run {run_id} printed and logged nothing{so_far})", markup=False)
        return
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
