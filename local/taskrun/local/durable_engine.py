"""The official durable execution engine for local runs (the executor of
aws-durable-execution-sdk-python-testing) and the `/2025-12-01/...` API it serves: imported
(~0.1 s with the testing package) only when the local stack's durable execution service
(taskrun.local.durable) first needs it.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aws_durable_execution_sdk_python_testing.checkpoint.processor import CheckpointProcessor
from aws_durable_execution_sdk_python_testing.child_dispatcher import UnconfiguredChildDispatcher
from aws_durable_execution_sdk_python_testing.clock import RealClock
from aws_durable_execution_sdk_python_testing.exceptions import (
    AwsApiException,
    DurableFunctionsTestError,
    UnknownRouteError,
)
from aws_durable_execution_sdk_python_testing.execution import ExecutionStatus
from aws_durable_execution_sdk_python_testing.executor import Executor
from aws_durable_execution_sdk_python_testing.invoker import InvokeResponse, LambdaInvoker
from aws_durable_execution_sdk_python_testing.model import StartDurableExecutionInput
from aws_durable_execution_sdk_python_testing.scheduler import Scheduler
from aws_durable_execution_sdk_python_testing.stores.memory import InMemoryExecutionStore
from aws_durable_execution_sdk_python_testing.stores.sqlite import SQLiteExecutionStore
from aws_durable_execution_sdk_python_testing.token import CallbackToken
from aws_durable_execution_sdk_python_testing.web import handlers, routes
from aws_durable_execution_sdk_python_testing.web.models import HTTPRequest, HTTPResponse

from taskrun.local.durable import STORE_FILE, AlreadyStarted
from taskrun.local.lambdas import LambdaRuntime
from taskrun.local.resources import ACCOUNT_ID
from taskrun.local.sandbox import FunctionError

MAX_PAGE_BYTES = 6 * 1024 * 1024  # an invocation's input, as Lambda's
INVOCATION_TIMEOUT_SECONDS = 900
RETENTION_DAYS = 14
# the AWS operations the endpoint serves, by the engine's routes, and the IAM action each is
ACTIONS: dict[type[routes.Route], tuple[str, type[handlers.EndpointHandler]]] = {
    routes.GetDurableExecutionRoute: ("GetDurableExecution", handlers.GetDurableExecutionHandler),
    routes.CheckpointDurableExecutionRoute: ("CheckpointDurableExecution", handlers.CheckpointDurableExecutionHandler),
    routes.StopDurableExecutionRoute: ("StopDurableExecution", handlers.StopDurableExecutionHandler),
    routes.GetDurableExecutionStateRoute: ("GetDurableExecutionState", handlers.GetDurableExecutionStateHandler),
    routes.GetDurableExecutionHistoryRoute: ("GetDurableExecutionHistory", handlers.GetDurableExecutionHistoryHandler),
    routes.ListDurableExecutionsByFunctionRoute: (
        "ListDurableExecutionsByFunction",
        handlers.ListDurableExecutionsByFunctionHandler,
    ),
    routes.CallbackSuccessRoute: (
        "SendDurableExecutionCallbackSuccess",
        handlers.SendDurableExecutionCallbackSuccessHandler,
    ),
    routes.CallbackFailureRoute: (
        "SendDurableExecutionCallbackFailure",
        handlers.SendDurableExecutionCallbackFailureHandler,
    ),
    routes.CallbackHeartbeatRoute: (
        "SendDurableExecutionCallbackHeartbeat",
        handlers.SendDurableExecutionCallbackHeartbeatHandler,
    ),
}


class AccessDeniedException(AwsApiException):
    """IAM refused the call (403), as Lambda answers it."""

    http_status_code = 403

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        return {"Type": "AccessDeniedException", "Message": self.message}


class SandboxInvoker(LambdaInvoker):
    """The engine's invocations of a durable function, each run in one of its sandboxes."""

    def __init__(self, runtime: LambdaRuntime) -> None:  # no client: nothing goes over HTTP
        self._runtime = runtime
        self._max_page_bytes = MAX_PAGE_BYTES

    def invoke(
        self,
        function_name: str,
        input: Any,
        endpoint_url: str | None = None,
        tenant_id: str | None = None,
        account_id: str | None = None,
        region_name: str | None = None,
    ) -> InvokeResponse:
        name, _, version = function_name.partition(":")
        try:
            text = self._runtime.invoke_text(name, json.dumps(input.to_json_dict()), version=version)
        except FunctionError as error:  # the engine counts it a failed attempt and tries again
            raise DurableFunctionsTestError(f"{name} failed: {error}") from error
        return InvokeResponse.from_payload(text.encode(), f"local-{uuid.uuid4()}")

    def update_endpoint(self, endpoint_url: str, region_name: str) -> None:
        """The sandboxes are the only endpoint."""

    def inherit_endpoint(self, child_execution_arn: str, parent_execution_arn: str) -> None:
        """The sandboxes are the only endpoint."""


class Engine:
    """The official engine, its executions' store open (in the state folder) and its
    scheduler running: made by taskrun.local.durable.DurableEngine when first needed."""

    def __init__(self, runtime: LambdaRuntime, region: str, folder: Path | None) -> None:
        self.runtime = runtime
        self.region = region
        self._starting = threading.Lock()  # a name's lookup and its start, as one step
        if folder is None:
            self.store: Any = InMemoryExecutionStore()
        else:
            path = folder / STORE_FILE
            if not path.exists():
                os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # owner-only, as the state folder
            self.store = SQLiteExecutionStore.create_and_initialize(path)
        self.scheduler = Scheduler()
        processor = CheckpointProcessor(self.store, self.scheduler, clock=RealClock())
        self.executor = Executor(
            store=self.store,
            scheduler=self.scheduler,
            invoker=SandboxInvoker(self.runtime),
            checkpoint_processor=processor,
            max_invocation_page_bytes=MAX_PAGE_BYTES,
            invocation_timeout_seconds=INVOCATION_TIMEOUT_SECONDS,
            clock=RealClock(),
            child_dispatcher=UnconfiguredChildDispatcher(),
            region=self.region,
        )
        processor.add_execution_observer(self.executor)
        self.scheduler.start()
        self._handlers = {route: handler(self.executor) for route, (_, handler) in ACTIONS.items()}
        self._router = routes.Router()

    def resume(self) -> int:
        """Take up the executions a stop left running (once the versions they run on are
        published again); how many."""
        return self._resume(self.running())

    def stop(self) -> None:
        self.executor.shutdown()
        self.scheduler.stop()

    def running(self) -> list[Any]:
        return [run for run in self.store.list_all() if run.current_status() is ExecutionStatus.RUNNING]

    def _resume(self, executions: Iterable[Any]) -> int:
        """Arm again what was armed in the engine's memory when it stopped: each running
        execution's next wait or retry (fired at once if overdue), and its end's event; and
        invoke it again, as Lambda does an invocation that was lost (a stop may have cut one
        off before it checkpointed its wait: it replays, its done steps answered from their
        checkpoints; one that only waits answers PENDING again)."""
        count = 0
        for execution in executions:
            arn = execution.durable_execution_arn
            self.executor._completion_events.setdefault(arn, self.scheduler.create_event())
            self.executor._schedule_earliest_pending(arn)
            self.executor._invoke_execution(arn)
            count += 1
        return count

    def start_execution(self, function_name: str, qualifier: str, name: str, payload: str, timeout: int) -> str:
        """An execution of the function named `name` on `payload`: the running one of that
        name if its input is the same (AlreadyStarted if not), else a new one; its ARN."""
        with self._starting:
            for execution in self.store.list_all():
                started = execution.start_input
                if (started.function_name, started.execution_name) == (function_name, name):
                    if execution.current_status() is not ExecutionStatus.RUNNING:
                        continue
                    if (started.input or "") != payload:
                        raise AlreadyStarted(f"an execution named {name} runs already with other input")
                    return str(execution.durable_execution_arn)
            output = self.executor.start_execution(
                StartDurableExecutionInput(
                    account_id=ACCOUNT_ID,
                    function_name=function_name,
                    function_qualifier=qualifier,
                    execution_name=name,
                    execution_timeout_seconds=timeout,
                    execution_retention_period_days=RETENTION_DAYS,
                    input=payload,
                )
            )
        return str(output.execution_arn)

    def function_of(self, route: routes.Route) -> str | None:
        """The name of the function whose execution a request is about (IAM judges the call
        on it), if it names one that exists."""
        arn = getattr(route, "arn", None)
        if arn is None and getattr(route, "callback_id", None):
            try:
                arn = CallbackToken.from_str(route.callback_id).execution_arn  # type: ignore[attr-defined]
            except Exception:
                return None
        try:
            logical_id = str(self.executor.get_execution(arn).start_input.function_name) if arn else None
        except Exception:
            return None
        spec = self.runtime.spec(logical_id) if logical_id else None
        return (spec.name or spec.logical_id) if spec is not None else logical_id

    def serve(
        self, environ: dict[str, Any], judge: Callable[[Any, str, str], None] | None
    ) -> tuple[int, dict[str, str], bytes]:
        """Answer one request to the `/2025-12-01/...` API, as Lambda would."""
        raw = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", ""))
        url = urlsplit(raw)
        method = str(environ.get("REQUEST_METHOD", "GET"))
        headers = {
            key[5:].replace("_", "-").title(): str(value) for key, value in environ.items() if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = str(environ["CONTENT_TYPE"])
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        try:
            route = self._router.find_route(url.path, method)
            action = ACTIONS.get(type(route))
            if action is None:  # the engine's own routes (start, health, ...) are not Lambda's
                raise UnknownRouteError(method, url.path)
            if judge is not None:
                function = self.function_of(route)
                caller = SimpleNamespace(uri=raw, headers=headers, region=self.region, durable_function=function)
                judge(caller, action[0], "*")
            query = parse_qs(url.query)
            parts: dict[str, Any] = {"method": method, "path": route, "headers": headers, "query_params": query}
            if isinstance(route, routes.BytesPayloadRoute):
                request = HTTPRequest.from_raw_bytes(body, **parts)
            else:
                request = HTTPRequest.from_bytes(body, None, **parts)
            response = self._handlers[type(route)].handle(route, request)
        except AwsApiException as error:
            response = HTTPResponse.create_error_from_exception(error)
        except UnknownRouteError:
            message = f"no operation {method} {url.path}"
            response = HTTPResponse(404, {}, {"Type": "UnknownOperationException", "Message": message})
        answer_headers = dict(response.headers)
        data = response.body_to_bytes() if response.body else b""
        if response.status_code >= 400 and isinstance(response.body, dict) and response.body.get("Type"):
            answer_headers["x-amzn-ErrorType"] = str(response.body["Type"])  # as Lambda names its errors
        return response.status_code, answer_headers, data
