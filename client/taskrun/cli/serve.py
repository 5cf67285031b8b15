"""`taskrun local`, `taskrun mcp` and `taskrun openapi`: the API served on this machine, an MCP
host's configuration, and the API document."""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from taskrun.cli.base import (
    api,
    app,
    err,
    fail,
    out,
)


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
    # what the person chose, read before the stack puts its settings into this environment
    key_chosen = bool(os.environ.get("TASKRUN_API_KEY"))
    secret_chosen = bool(os.environ.get("TASKRUN_WEBHOOK_SECRET"))
    # This process serves the stack alone: the collector stays off while the stack's
    # modules import and its start makes its long-lived objects, which are then frozen
    # (moved where no collection walks them: about a quarter of the start's time, and of
    # every full collection's after it). See LocalStack.start.
    collecting = gc.isenabled()
    gc.disable()
    try:
        stack, key, names = _start_stack(tasks, root, data_dir, secrets)
    except BaseException:  # the command ends here (fail's Exit included): the collector as it was
        if collecting:
            gc.enable()
        raise
    gc.freeze()
    if collecting:
        gc.enable()
    try:
        server = stack.serve(host, port)
    except OSError as error:
        stack.stop()
        fail(f"local: cannot listen on {host}:{port}: {error.strerror}")
    bound_host, bound_port = server.server_address[:2]
    say: Callable[[str], None] = lambda line: print(line, flush=True)  # noqa: E731
    say(f"taskrun local: http://{bound_host}:{bound_port}/v1  (template {stack.stack.path})")
    say(f"API docs: http://{bound_host}:{bound_port}/v1/docs")
    say(f"console: http://{bound_host}:{bound_port}/console · MCP: http://{bound_host}:{bound_port}/mcp")
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
    if stack.resumed_flows:
        go = "run goes" if stack.resumed_flows == 1 else "runs go"
        say(f"{stack.resumed_flows} code-first flow {go} on from where the last stop left them")
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
    try:
        say(stack.under_way())
    except Exception:  # the stop goes on whatever the count met
        say("taskrun local: stopping")
    stack.stop()
    # Everything is kept by now (the journal is closed); an invocation still under way on a
    # worker thread must not hold the exit, as it would at interpreter shutdown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _start_stack(
    tasks: list[Path], root: Path | None, data_dir: Path | None, secrets: Path | None
) -> tuple[Any, str, str]:
    """The local stack, started; its API key; its tasks' names. Ends the command on a failure."""
    try:
        from taskrun.local.stack import LocalStack, bundle_root
    except ModuleNotFoundError as missing:  # the client alone: the emulator is an extra
        fail(f"local: the local stack needs {missing.name}: pip install 'taskrun[local]'", 2)

    for directory in tasks:
        if not directory.is_dir():
            fail(f"tasks directory {directory} does not exist", 2)
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
    return stack, key, names


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
