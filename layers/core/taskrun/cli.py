"""The `taskrun` command: `taskrun local` runs the stack on this machine; `taskrun keys create` adds a key."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path


def _local(args: argparse.Namespace) -> int:
    from taskrun.local.stack import LocalStack, bundle_root

    for directory in args.tasks:
        if not Path(directory).is_dir():
            parser().error(f"tasks directory {directory} does not exist")
    data_dir = None if args.ephemeral else Path(args.data).resolve()
    try:
        stack = LocalStack(
            root=Path(args.root) if args.root else bundle_root(),
            extra_task_dirs=[Path(d) for d in args.tasks],
            api_key=os.environ.get("TASKRUN_API_KEY") or None,
            data_dir=data_dir,
        )
    except ValueError as error:  # a setting that cannot work, such as a malformed webhook secret
        print(f"taskrun local: could not start: {error}", file=sys.stderr)
        return 1
    from taskrun.runtime import task_catalog

    try:
        key = stack.start()
        tasks = ", ".join(definition.task_id for definition in task_catalog().all())
    except Exception as error:  # a task module that does not import, a flow's ASL missing or invalid
        print(f"taskrun local: could not start: {type(error).__name__}: {error}", file=sys.stderr)
        stack.stop()
        return 1
    try:
        server = stack.serve(args.host, args.port)
    except OSError as error:
        print(f"taskrun local: cannot listen on {args.host}:{args.port}: {error.strerror}", file=sys.stderr)
        stack.stop()
        return 1
    host, port = server.server_address[:2]
    print(f"taskrun local: http://{host}:{port}/v1  (template {stack.stack.path})", flush=True)
    if not os.environ.get("TASKRUN_API_KEY"):
        print(f"API key (set TASKRUN_API_KEY to choose one): {key}", flush=True)
    if not os.environ.get("TASKRUN_WEBHOOK_SECRET"):
        print(f"webhook signing secret (set TASKRUN_WEBHOOK_SECRET to choose one): {stack.webhook_secret}", flush=True)
    if data_dir is None:
        print("state: in memory only (--ephemeral): nothing is kept after a stop", flush=True)
    else:
        kept = stack.emulator.restored_items
        print(f"state: {data_dir} ({kept} items kept; delete the folder to start afresh)", flush=True)
    if stack.interrupted_runs:
        print(f"{stack.interrupted_runs} runs cut off by the last stop were ended failed", flush=True)
    if stack.resumed_deliveries:
        print(f"{stack.resumed_deliveries} webhook deliveries pending from before the stop go on", flush=True)
    print(f"tasks: {tasks}", flush=True)
    print("Ctrl-C stops it.", flush=True)
    stopped = threading.Event()
    # Handlers of our own: a shell may start a background job with SIGINT ignored.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    stopped.wait()
    print("taskrun local: stopping", flush=True)
    stack.stop()
    # Everything is kept by now (the journal is closed); an invocation still under way on a
    # worker thread must not hold the exit, as it would at interpreter shutdown.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _create_key(args: argparse.Namespace) -> int:
    from taskrun.auth import DynamoKeyStore, new_key

    secret, record = new_key(name=args.name)
    DynamoKeyStore(args.table).put(record)
    print(f"key_id: {record.key_id}\nkey: {secret}\n(the key is shown only now)")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="taskrun", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)
    local = commands.add_parser("local", help="serve the API on this machine, on an in-process AWS emulator")
    local.add_argument("--host", default="127.0.0.1")
    local.add_argument("--port", type=int, default=9477)
    local.add_argument(
        "--tasks", action="append", default=[], metavar="DIR", help="also import every module in DIR (repeatable)"
    )
    local.add_argument("--root", help="the bundle folder holding template.yaml (default: found)")
    state = local.add_mutually_exclusive_group()
    state.add_argument(
        "--data", default=".taskrun", metavar="DIR", help="keep every table here across restarts (default: .taskrun)"
    )
    state.add_argument("--ephemeral", action="store_true", help="keep nothing: every table lives in memory only")
    local.set_defaults(run=_local)
    keys = commands.add_parser("keys", help="manage API keys of a deployed stack").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="make a key, store its hash, print it once")
    create.add_argument("--table", required=True, help="the stack's KeysTableName output")
    create.add_argument("--name", default="")
    create.set_defaults(run=_create_key)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
