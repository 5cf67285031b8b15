"""The in-process AWS emulator of local mode: moto 5.2.5 with Lambda routed to the real handlers.

moto's simple Lambda backend only echoes payloads; here its `invoke` calls the handler of
the function named in the template instead: synchronously for RequestResponse, on a
background thread for Event (as Lambda's asynchronous invoke would).
"""

from __future__ import annotations

import importlib.util
import io
import json
import logging
import os
import threading
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import boto3

from taskrun.local.template import ACCOUNT_ID, FunctionSpec, Stack

if TYPE_CHECKING:
    from moto.core.config import DefaultConfig

EMULATOR_CONFIG: DefaultConfig = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}


@dataclass
class LambdaContext:
    """What the Lambda runtime hands a handler as its context."""

    function_name: str
    timeout: int
    region: str
    memory_limit_in_mb: int = 512
    function_version: str = "$LATEST"
    log_group_name: str = "local"
    log_stream_name: str = "local"

    def __post_init__(self) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self.invoked_function_arn = f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{self.function_name}"
        self._deadline = time.monotonic() + self.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class FunctionError(Exception):
    """A handler raised: carries the payload Lambda would answer with."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload["errorMessage"])
        self.payload = payload


class LambdaRuntime:
    """Imports each function's `app.py` once (its cold start) and calls its handler."""

    def __init__(self, functions: list[FunctionSpec], region: str) -> None:
        self._functions = {spec.logical_id: spec for spec in functions}
        self._region = region
        self._modules: dict[str, ModuleType] = {}
        self._lock = threading.Lock()
        self._background: list[threading.Thread] = []

    def __contains__(self, name: str) -> bool:
        return self.function_name(name) in self._functions

    @staticmethod
    def function_name(name_or_arn: str) -> str:
        return name_or_arn.split(":function:")[-1].split(":")[0]

    def handler(self, name: str) -> Callable[[Any, Any], Any]:
        spec = self._functions[name]
        module_name, _, attribute = spec.handler.rpartition(".")
        with self._lock:
            module = self._modules.get(name)
            if module is None:
                path = spec.code_uri / (module_name.replace(".", "/") + ".py")
                loader_spec = importlib.util.spec_from_file_location(f"taskrun_function_{name}", path)
                if loader_spec is None or loader_spec.loader is None:
                    raise FileNotFoundError(path)
                module = importlib.util.module_from_spec(loader_spec)
                loader_spec.loader.exec_module(module)
                self._modules[name] = module
        handler: Callable[[Any, Any], Any] = getattr(module, attribute)
        return handler

    def invoke(self, name_or_arn: str, event: Any) -> Any:
        """Call the handler as Lambda would; a raised exception becomes FunctionError."""
        name = self.function_name(name_or_arn)
        context = LambdaContext(name, self._functions[name].timeout, self._region)
        try:
            return self.handler(name)(event, context)
        except Exception as error:
            raise FunctionError(
                {
                    "errorType": type(error).__name__,
                    "errorMessage": str(error),
                    "stackTrace": traceback.format_exception(error),
                }
            ) from error

    def invoke_async(self, name_or_arn: str, event: Any) -> None:
        """Run the handler in the background; a failure goes to the function's on-failure
        destination, with the record Lambda would send (no retries: the template sets none)."""
        spec = self._functions[self.function_name(name_or_arn)]

        def run() -> None:
            try:
                self.invoke(name_or_arn, event)
            except FunctionError as error:
                print(f"async invoke of {spec.logical_id} failed: {error.payload['errorType']}: {error}", flush=True)
                if spec.on_failure:
                    self.invoke(spec.on_failure, _failure_record(spec, self._region, event, error.payload))

        thread = threading.Thread(target=run, name=f"lambda-{self.function_name(name_or_arn)}", daemon=True)
        thread.start()
        self._background = [t for t in self._background if t.is_alive()] + [thread]

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait for background invocations to finish (tests use it to end cleanly)."""
        deadline = time.monotonic() + timeout
        for thread in list(self._background):
            thread.join(max(0.0, deadline - time.monotonic()))


def _failure_record(spec: FunctionSpec, region: str, event: Any, error: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "1.0",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{spec.logical_id}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 1,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": error["errorType"], "errorMessage": error["errorMessage"]},
    }


def _route_lambda_to(runtime: LambdaRuntime) -> Callable[[], None]:
    """Make moto's simple Lambda backend call real handlers; return the undo."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    original = LambdaSimpleBackend.invoke

    def invoke(
        self: LambdaSimpleBackend,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> str | bytes | None:
        if function_name not in runtime:
            self.get_function(function_name, qualifier)  # an unknown function is refused, as Lambda does
            return original(self, function_name, qualifier, body, headers, response_headers)
        event = json.loads(body) if body else {}
        if headers.get("X-Amz-Invocation-Type") == "Event":
            runtime.invoke_async(function_name, event)
            return b""
        try:
            result = runtime.invoke(function_name, event)
        except FunctionError as error:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(error.payload).encode()
        return json.dumps(result).encode()

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]

    def undo() -> None:
        LambdaSimpleBackend.invoke = original  # type: ignore[method-assign]

    return undo


def _make_item_access_atomic() -> Callable[[], None]:
    """DynamoDB checks a write's condition and applies it as one step, and a read never sees
    half a write; moto, under concurrent threads, does neither (a reader could see a run's
    new status before its result). Its item operations are serialised here. Return the undo."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    originals = {
        name: getattr(DynamoDBBackend, name)
        for name in ("put_item", "update_item", "delete_item", "transact_write_items", "get_item", "query", "scan")
    }

    def serialised(original: Callable[..., Any]) -> Callable[..., Any]:
        def write(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return original(*args, **kwargs)

        return write

    for name, original in originals.items():
        setattr(DynamoDBBackend, name, serialised(original))

    def undo() -> None:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)

    return undo


def _keep_task_failure_causes() -> Callable[[], None]:
    """moto's SendTaskFailure drops `cause`; Step Functions keeps it. Return the undo."""
    from moto.core.responses import ActionResult, EmptyResult
    from moto.stepfunctions.responses import StepFunctionResponse

    original = StepFunctionResponse.send_task_failure

    def send_task_failure(self: StepFunctionResponse) -> ActionResult:
        self.stepfunction_backend.send_task_failure(  # the executing backend takes a cause
            self._get_param("taskToken"),
            error=self._get_param("error"),
            cause=self._get_param("cause"),  # type: ignore[call-arg]
        )
        return EmptyResult()

    StepFunctionResponse.send_task_failure = send_task_failure  # type: ignore[method-assign]

    def undo() -> None:
        StepFunctionResponse.send_task_failure = original  # type: ignore[method-assign]

    return undo


class Emulator:
    """Stands up a template's tables and functions on moto, in this process."""

    def __init__(self, stack: Stack, environment_overrides: dict[str, str] | None = None) -> None:
        self.stack = stack
        self.functions = stack.functions()
        self.runtime = LambdaRuntime(self.functions, stack.region)
        self._overrides = environment_overrides or {}
        self._mock: Any = None
        self._undo: list[Callable[[], None]] = []

    def start(self) -> None:
        from moto import mock_aws

        # moto's ASL interpreter logs every failed state at length; the run's error says it once.
        logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
        os.environ.setdefault("AWS_DEFAULT_REGION", self.stack.region)
        os.environ["AWS_REGION"] = self.stack.region
        self._mock = mock_aws(config=EMULATOR_CONFIG)
        self._mock.start()
        self._undo = [_route_lambda_to(self.runtime), _make_item_access_atomic(), _keep_task_failure_causes()]
        self._set_environment()
        self._create_tables()
        self._create_functions()
        from taskrun.local.events import EventBus, StreamPoller, publish_execution_ends

        self.bus = EventBus(self.stack.event_rules(), self.runtime, self.stack.region)
        self._undo.append(publish_execution_ends(self.bus))
        self.substitutions: dict[str, str] = {}
        for machine in self.stack.state_machines():
            self.create_state_machine(machine.name, machine.definition, machine.substitutions)
            self.substitutions.update(machine.substitutions)
        self._pollers = [
            StreamPoller(source, self.runtime, self.stack.region) for source in self.stack.stream_sources()
        ]
        for poller in self._pollers:
            poller.start()

    def create_state_machine(self, name: str, definition: Path, substitutions: dict[str, str]) -> str:
        """Create a state machine from an ASL file, with `${Name}` substitutions as SAM makes them."""
        text = definition.read_text()
        for key, value in substitutions.items():
            text = text.replace("${" + key + "}", value)
        client = boto3.client("stepfunctions", region_name=self.stack.region)
        created = client.create_state_machine(name=name, definition=text, roleArn=self._role, type="STANDARD")
        return str(created["stateMachineArn"])

    def stop(self) -> None:
        for poller in getattr(self, "_pollers", []):
            poller.stop()
        self.runtime.wait_idle(timeout=1.0)
        for undo in self._undo:
            undo()
        if self._mock:
            self._mock.stop()

    def _set_environment(self) -> None:
        """One process stands in for every function, so it holds every function's variables."""
        for spec in self.functions:
            os.environ.update(spec.environment)
        os.environ.update(self._overrides)

    def _create_tables(self) -> None:
        dynamodb = boto3.client("dynamodb", region_name=self.stack.region)
        for logical_id, resource in self.stack.of_type("AWS::DynamoDB::Table").items():
            properties = self.stack.resolve(resource["Properties"])
            request = {
                "TableName": logical_id,
                "AttributeDefinitions": properties["AttributeDefinitions"],
                "KeySchema": properties["KeySchema"],
                "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
            }
            if properties.get("GlobalSecondaryIndexes"):
                request["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
            if properties.get("StreamSpecification"):
                request["StreamSpecification"] = {"StreamEnabled": True, **properties["StreamSpecification"]}
            dynamodb.create_table(**request)

    def _create_functions(self) -> None:
        iam = boto3.client("iam", region_name=self.stack.region)
        role = iam.create_role(RoleName="taskrun-local", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        self._role = role
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr("app.py", "# local mode calls the handler in functions/ directly\n")
        lambda_client = boto3.client("lambda", region_name=self.stack.region)
        for spec in self.functions:
            lambda_client.create_function(
                FunctionName=spec.logical_id,
                Runtime="python3.12",
                Role=role,
                Handler=spec.handler,
                Code={"ZipFile": archive.getvalue()},
                Timeout=spec.timeout,
                Environment={"Variables": spec.environment},
            )
