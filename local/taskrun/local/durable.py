"""Lambda durable functions, locally: the official durable execution engine for local runs
(the executor of aws-durable-execution-sdk-python-testing) behind the emulator's endpoint.

An Invoke of a durable function with a `DurableExecutionName` starts an execution here (a
repeated start of a running execution with the same input is that execution; with other
input, DurableExecutionAlreadyStartedException, as on AWS); the engine invokes the
function in its sandboxes, and the function's SDK checkpoints back through the endpoint's
`/2025-12-01/...` API, judged by IAM as every other call is. Executions are kept in the
state folder (SQLite), and those running at a stop are taken up again at the next start:
their waits and retries fire when due, no succeeded step runs again.

The engine (taskrun.local.durable_engine, with the testing package ~0.1 s of the stack's
start) is made when first needed: by a durable function's first execution, or at the start
when the state folder keeps executions from an earlier one.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskrun.local.lambdas import LambdaRuntime
from taskrun.local.resources import FunctionSpec
from taskrun.private import private_folder, write_private
from taskrun.results.tasklogs import SHOWN_AS

if TYPE_CHECKING:
    from taskrun.local.durable_engine import Engine

API_PREFIX = "/2025-12-01/"
STORE_FILE = "durable-executions.db"  # the executions, in the state folder


class AlreadyStarted(Exception):
    """An execution of that name runs with other input (DurableExecutionAlreadyStartedException)."""


class EngineStopped(Exception):
    """The stack is stopping: its durable execution service takes no more calls."""


class DurableEngine:
    """The durable execution service of the local stack: the engine, made on first need."""

    def __init__(self, runtime: LambdaRuntime, region: str, folder: Path | None) -> None:
        self.runtime = runtime
        self.region = region
        self.folder = folder
        self.judge: Callable[[Any, str, str], None] | None = None  # IAM's, once the emulator has one
        # brings the published versions up to the task files before an execution starts on the
        # latest (the stack's watcher, once it has one): a run of a module saved a moment ago
        # starts on a version that has it
        self.settle: Callable[[], None] | None = None
        self._engine: Engine | None = None
        self._made = threading.Lock()
        self._stopped = False

    def start(self) -> int:
        """How many executions a stop left running: the engine is made now if the state
        folder keeps executions (a store an earlier start made), else on first need."""
        if self.folder is not None and (self.folder / STORE_FILE).exists():
            return len(self.engine().running())
        return 0

    def engine(self) -> Engine:
        with self._made:
            if self._stopped:  # a request in the stop's last moments: no engine is made anew
                raise EngineStopped("the durable execution service is stopping")
            if self._engine is None:
                from taskrun.local.durable_engine import Engine

                self._engine = Engine(self.runtime, self.region, self.folder)
            return self._engine

    def resume(self) -> int:
        """Take up the executions a stop left running (once the versions they run on are
        published again); how many."""
        return self._engine.resume() if self._engine is not None else 0

    def stop(self) -> None:
        with self._made:
            self._stopped = True
            if self._engine is not None:
                self._engine.stop()

    def start_execution(self, function_name: str, qualifier: str, name: str, payload: str, timeout: int) -> str:
        """An execution of the function named `name` on `payload`: the running one of that
        name if its input is the same (AlreadyStarted if not), else a new one; its ARN."""
        return self.engine().start_execution(function_name, qualifier, name, payload, timeout)

    def serve(self, environ: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        """Answer one request to the `/2025-12-01/...` API, as Lambda would."""
        try:
            engine = self.engine()
        except EngineStopped as stopping:
            body = json.dumps({"Type": "ServiceException", "Message": str(stopping)}).encode()
            return 503, {"Content-Type": "application/json", "x-amzn-ErrorType": "ServiceException"}, body
        return engine.serve(environ, self.judge)


def durable_api(app: Callable[..., Any], engine: DurableEngine) -> Callable[..., Any]:
    """The emulator's WSGI app, with Lambda's `/2025-12-01/...` durable execution API served
    by the engine (on its raw path: an execution's ARN holds an encoded `/`)."""

    def serve(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        raw = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", ""))
        if not raw.startswith(API_PREFIX):
            return app(environ, start_response)
        status, headers, body = engine.serve(environ)
        reason = "OK" if status < 400 else "Error"
        start_response(f"{status} {reason}", [*headers.items(), ("Content-Length", str(len(body)))])
        return [body]

    return serve


def publish_versions(
    runtime: LambdaRuntime, functions: list[FunctionSpec], folder: Path, kept_dir: Path, kept: bool = False
) -> None:
    """A durable function's execution keeps the version it started on, as on AWS, where each
    deploy publishes one: locally a version is the task modules as they are now (the last
    source of each that imported, in `kept_dir`), kept in the state folder (`folder`). With
    `kept`, the versions kept from before are published again first, in their order."""
    numbers = sorted(int(path.name) for path in folder.iterdir() if path.name.isdigit()) if kept else []
    sources = _sources_in(kept_dir)
    for spec in functions:
        if spec.durable_timeout is None:
            continue
        for number in numbers:
            runtime.publish_version(spec.logical_id, {"TASKRUN_TASK_DIRS": str(folder / str(number))})
        latest = runtime.latest_version(spec.logical_id)
        if latest is not None and _sources_in(folder / latest) == sources:
            continue  # the code is as the last version has it
        version = private_folder(folder / str(int(latest or 0) + 1))
        for name, text in sources.items():
            write_private(version / name, text)
        write_private(version / SHOWN_AS, json.dumps(_origins(sources)))
        runtime.publish_version(spec.logical_id, {"TASKRUN_TASK_DIRS": str(version)})


def _origins(sources: dict[str, str]) -> dict[str, str]:
    """The tasks directory's name each module file of a version came from, so that a version's
    traceback names `tasks/order_code.py` (the file a person edits), not the version's folder."""
    from taskrun.settings import get_settings

    origins: dict[str, str] = {}
    for directory in get_settings().task_dirs:
        for name in sources:
            if name not in origins and (directory / name).is_file():
                origins[name] = directory.resolve().name
    return origins


def _sources_in(folder: Path) -> dict[str, str]:
    return {path.name: path.read_text() for path in sorted(folder.glob("*.py"))} if folder.is_dir() else {}
