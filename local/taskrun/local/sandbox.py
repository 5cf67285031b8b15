"""Lambda sandboxes of local mode: one process per sandbox, one invocation at a time.

A sandbox is forked from a server process that has the heavy libraries imported already
(boto3, pydantic, Powertools), so it starts in milliseconds; it then imports its
function's handler (the init phase) and serves invocations until it is retired. Its
environment is the function's own, with the emulator's endpoint, so the handler reaches
the emulator over HTTP as it reaches AWS. What it prints goes to the stack's log.

A sandbox that exits, crashes or overruns its function's timeout is killed and replaced;
so is one whose invocation left threads running (a script past its own timeout), so no
overrun code goes on. Only that sandbox goes: the rest of the stack is another process.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from taskrun.local.resources import ACCOUNT_ID

MAX_RESPONSE_BYTES = 6 * 1024 * 1024
INIT_TIMEOUT_SECONDS = 10.0  # Lambda's init phase limit; past it, init goes on within the first invocation
# the last one shares botocore's service models among the sandboxes and freezes the lot
PRELOADED = [
    "boto3",
    "botocore.client",
    "pydantic",
    "aws_lambda_powertools.event_handler",
    "yaml",
    "aws_durable_execution_sdk_python",  # with the task catalog (code-first flows): most sandboxes load it
    "taskrun.local.preload",
]


class FunctionError(Exception):
    """An invocation failed: carries the payload Lambda would answer with, and whether the
    sandbox may take another (a handler's exception leaves it so, as Lambda keeps an
    execution environment whose runtime reported the error; a crash or timeout does not)."""

    def __init__(self, payload: dict[str, Any], sandbox_fit: bool = False) -> None:
        super().__init__(payload["errorMessage"])
        self.payload = payload
        self.sandbox_fit = sandbox_fit


class InvokeRefused(FunctionError):
    """The Invoke call itself failed before any sandbox ran (throttled; the stack stopping):
    Lambda answers it with an HTTP error of the call, not as the function's error."""

    def __init__(self, payload: dict[str, Any], status: int) -> None:
        super().__init__(payload)
        self.status = status

    @property
    def throttled(self) -> bool:
        return self.status == 429


def error_payload(error_type: str, message: str, stack: list[str] | None = None) -> dict[str, Any]:
    return {"errorType": error_type, "errorMessage": message, "stackTrace": stack or []}


@dataclass
class LambdaContext:
    """What the Lambda runtime hands a handler as its context."""

    function_name: str
    timeout: float
    region: str
    aws_request_id: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    log_group_name: str = "local"
    log_stream_name: str = "local"

    def __post_init__(self) -> None:
        self.invoked_function_arn = f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.function_name}"
        self._deadline = time.monotonic() + self.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class FunctionImage:
    """What a sandbox needs to become one function: its code, handler, settings and environment."""

    name: str
    code_uri: str
    handler: str
    timeout: float
    memory: int
    region: str
    environment: dict[str, str]


def _load_handler(image: FunctionImage) -> Callable[[Any, Any], Any]:
    module_name, _, attribute = image.handler.rpartition(".")
    path = Path(image.code_uri) / (module_name.replace(".", "/") + ".py")
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    handler: Callable[[Any, Any], Any] = getattr(module, attribute)
    return handler


def _hold_to_the_memory_size(megabytes: int) -> None:
    """The sandbox, and the processes it starts, may allocate no more than the function's
    MemorySize, as Lambda holds a function to it: past it an allocation fails (a Python
    MemoryError) where Lambda would stop the runtime; either way the invocation fails."""
    limit = megabytes * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _take_the_log_level() -> None:
    """Loggers made while this process was unpickled (before it had the function's
    environment) take the function's log level, as in a Lambda process that imports its
    code with its environment set."""
    level = os.environ.get("POWERTOOLS_LOG_LEVEL", "").upper()
    service = os.environ.get("POWERTOOLS_SERVICE_NAME", "")
    if not (level and service and isinstance(logging.getLevelName(level), int)):
        return
    for name, made in list(logging.root.manager.loggerDict.items()):
        if isinstance(made, logging.Logger) and (name == service or name.startswith(service + ".")):
            made.setLevel(level)


def _serve(image: FunctionImage, requests: Connection, log: Connection) -> None:
    """The sandbox process: init, then one invocation at a time until the stack hangs up."""
    for stream in (1, 2):
        os.dup2(log.fileno(), stream)
    log.close()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the stack's to handle
    threading.Thread(target=_exit_with_the_stack, daemon=True).start()
    os.environ.clear()
    os.environ.update(image.environment)
    _take_the_log_level()
    _hold_to_the_memory_size(image.memory)
    try:
        handler = _load_handler(image)
    except BaseException as error:
        requests.send(("ready", error_payload("Runtime.ImportModuleError", f"{type(error).__name__}: {error}")))
        return
    requests.send(("ready", None))
    while True:
        try:
            request_id, event_text, timeout = requests.recv()
        except (EOFError, OSError):
            return
        before = set(threading.enumerate())
        context = LambdaContext(image.name, timeout, image.region, request_id, memory_limit_in_mb=image.memory)
        fatal = False  # SystemExit and the like end the runtime, as they end Lambda's
        try:
            answer: tuple[str, Any] = ("ok", json.dumps(handler(json.loads(event_text), context)))
        except BaseException as error:
            fatal = not isinstance(error, Exception)
            stack = traceback.format_exception(error)
            answer = ("error", error_payload(type(error).__name__, str(error), stack))
        leftover = [thread for thread in threading.enumerate() if thread not in before and thread.is_alive()]
        requests.send((*answer, bool(leftover) or fatal))
        if fatal:
            return


def _exit_with_the_stack() -> None:
    """A sandbox ends when the stack that started it does, even a killed one."""
    stack = multiprocessing.parent_process()
    if stack is not None:
        stack.join()
        os._exit(1)


_context: Any = None


def sandbox_context() -> Any:
    """The forkserver that sandboxes are forked from, with the heavy imports done once."""
    global _context
    if _context is None:
        # Each sandbox imports the program's main module again (as multiprocessing does) before
        # it has its function's environment: loggers made then must already bear the
        # service's name (the template's), or Powertools takes them for orphans.
        os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "taskrun")
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOADED)
        forkserver.ensure_running()  # it imports the preloaded modules while the stack starts
    return _context


class Sandbox:
    """One sandbox process and the pipe it takes invocations on."""

    def __init__(self, image: FunctionImage, on_log: Callable[[str, str], None], generation: int = 0) -> None:
        self.image = image
        self.generation = generation  # of the task code it imported
        self._killing = threading.Lock()
        context = sandbox_context()
        self._requests, child_requests = context.Pipe()
        log_reader, log_writer = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_serve, args=(image, child_requests, log_writer), name=f"sandbox-{image.name}"
        )
        self.process.start()
        child_requests.close()
        log_writer.close()
        threading.Thread(target=self._read_log, args=(log_reader, on_log), daemon=True).start()
        self.init_error: dict[str, Any] | None = None
        limit = INIT_TIMEOUT_SECONDS + image.timeout
        if not self._requests.poll(limit):
            self.kill()
            self.init_error = error_payload("Sandbox.Timedout", f"the init phase took over {limit:g} s")
            return
        try:
            _, self.init_error = self._requests.recv()
        except (EOFError, OSError):
            self.init_error = self._exit_payload()

    def _read_log(self, reader: Connection, on_log: Callable[[str, str], None]) -> None:
        with open(reader.fileno(), "rb", closefd=False) as stream:
            for line in stream:
                on_log(self.image.name, line.decode(errors="replace").rstrip("\n"))
        reader.close()

    def invoke(self, event_text: str, timeout: float) -> tuple[str, bool]:
        """Run one invocation; answer the result as JSON text and whether the sandbox is still
        fit for another. A failure raises FunctionError, and the sandbox is then unfit if it died."""
        request_id = str(uuid.uuid4())
        try:
            self._requests.send((request_id, event_text, timeout))
            if not self._requests.poll(timeout + 0.05):
                self.kill()
                message = f"RequestId: {request_id} Error: Task timed out after {timeout:.2f} seconds"
                raise FunctionError(error_payload("Sandbox.Timedout", message))
            status, value, unfit = self._requests.recv()
        except (EOFError, OSError):
            raise FunctionError(self._exit_payload(request_id)) from None
        if unfit:
            self.kill()  # code of this invocation is still running: nothing may run on unseen
        if status == "error":
            raise FunctionError(value, sandbox_fit=not unfit)
        if len(value) > MAX_RESPONSE_BYTES:
            raise FunctionError(
                error_payload(
                    "Function.ResponseSizeTooLarge",
                    f"Response payload size ({len(value)} bytes) exceeded maximum allowed payload size "
                    f"({MAX_RESPONSE_BYTES} bytes).",
                )
            )
        return value, not unfit

    def _exit_payload(self, request_id: str = "") -> dict[str, Any]:
        self.process.join(timeout=1)
        code = self.process.exitcode
        self.kill()
        reason = f"signal {-code}" if code is not None and code < 0 else f"exit status {code}"
        return error_payload("Runtime.ExitError", f"RequestId: {request_id} Error: Runtime exited with error: {reason}")

    @property
    def alive(self) -> bool:
        return self.process.is_alive()

    def kill(self) -> None:
        """Stop the process and close its pipe, once, whichever thread asks first (the stack
        stopping, and the invocation that then finds its sandbox gone)."""
        with self._killing:
            if self.process.is_alive():
                self.process.kill()
            self.process.join(timeout=2)
            if not self._requests.closed:
                self._requests.close()
