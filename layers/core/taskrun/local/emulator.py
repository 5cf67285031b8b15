"""The AWS emulator of local mode: moto 5.2.5 served over HTTP from this process, with
Lambda routed to the real handlers in their sandboxes (taskrun.local.lambdas).

moto's simple Lambda backend only echoes payloads; here its `invoke` runs the function
named in the template instead: synchronously for RequestResponse, queued for Event (as
Lambda's asynchronous invoke would). Everything, this process and the sandboxes alike,
reaches the emulator on its endpoint (AWS_ENDPOINT_URL), as it would reach AWS.
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

import boto3
from moto.dynamodb.models.dynamo_type import DynamoType

from taskrun.local.journal import Journal
from taskrun.local.lambdas import LambdaRuntime
from taskrun.local.sandbox import FunctionError, sandbox_context
from taskrun.local.template import ACCOUNT_ID, Stack

if TYPE_CHECKING:
    from moto.core.config import DefaultConfig

EMULATOR_CONFIG: DefaultConfig = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


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
        try:
            if headers.get("X-Amz-Invocation-Type") == "Event":
                runtime.invoke_async(function_name, event)
                return b""
            return runtime.invoke_text(function_name, json.dumps(event)).encode()
        except FunctionError as error:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(error.payload).encode()

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]

    def undo() -> None:
        LambdaSimpleBackend.invoke = original  # type: ignore[method-assign]

    return undo


def _make_item_access_atomic(journal: Journal | None) -> Callable[[], None]:
    """DynamoDB checks a write's condition and applies it as one step, and a read never sees
    half a write; moto, under concurrent threads, does neither (a reader could see a run's
    new status before its result). Its item operations are serialised here, and each write
    is recorded in the journal, if there is one, before it answers. Return the undo."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    reads = ("get_item", "query", "scan", "batch_get_item")
    writes = ("put_item", "update_item", "delete_item", "transact_write_items")
    originals = {name: getattr(DynamoDBBackend, name) for name in (*reads, *writes)}

    def serialised(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def operation(backend: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
            with lock:
                answer = original(backend, *args, **kwargs)
                if journal is not None and name in writes:
                    _record(journal, backend, name, answer, args, kwargs)
                return answer

        return operation

    for name, original in originals.items():
        setattr(DynamoDBBackend, name, serialised(name, original))

    def undo() -> None:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)

    return undo


def _record(journal: Journal, backend: Any, operation: str, answer: Any, args: Any, kwargs: Any) -> None:
    """Journal what a write left behind: the item it wrote, or the key it deleted."""
    if operation == "transact_write_items":
        transact_items = kwargs.get("transact_items", args[0] if args else [])
        for entry in transact_items:
            request = next(iter(entry.values()))
            table = backend.get_table(request["TableName"])
            attributes = request.get("Key") or request.get("Item") or {}
            hash_key = DynamoType(attributes[table.hash_key_attr])
            range_key = DynamoType(attributes[table.range_key_attr]) if table.range_key_attr else None
            item = table.get_item(hash_key, range_key)
            if item is not None:
                journal.written(table.name, item)
        return
    table_name = kwargs.get("table_name", args[0] if args else "")
    if answer is None:
        return
    if operation == "delete_item":
        journal.deleted(table_name, answer)
    else:
        journal.written(table_name, answer)


def restore_tables(journal: Journal, region: str) -> int:
    """Put the journal's items back into the emulator's tables; return how many. The journal
    is then rewritten as one line per item and takes every write from now on."""
    from moto.dynamodb.models import dynamodb_backends

    backend = dynamodb_backends[ACCOUNT_ID][region]
    items = journal.load()
    for table, by_key in items.items():
        if table not in backend.tables:
            continue
        for item in by_key.values():
            backend.put_item(table, item)
    journal.open(items)
    return sum(len(by_key) for by_key in items.values())


def _serve_moto_faster() -> Callable[[], None]:
    """moto's server looks up the backend of every request by scanning its modules, and sends
    headers and body in separate writes that Nagle's algorithm may hold back: remember each
    host's backend, and send at once. Return the undo."""
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.get_backend_for_host
    known: dict[str | None, Any] = {}

    def get_backend_for_host(self: DomainDispatcherApplication, host: str | None) -> Any:
        if host not in known:
            known[host] = original(self, host)
        return known[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]
    MotoRequestHandler.disable_nagle_algorithm = True

    def undo() -> None:
        DomainDispatcherApplication.get_backend_for_host = original  # type: ignore[method-assign]
        MotoRequestHandler.disable_nagle_algorithm = False

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
    """Stands up a template's tables, functions and state machines on moto, served on a local port."""

    def __init__(
        self, stack: Stack, environment_overrides: dict[str, str] | None = None, data_dir: Path | None = None
    ) -> None:
        self.stack = stack
        self.journal = Journal(data_dir) if data_dir is not None else None
        self.restored_items = 0
        self.functions = stack.functions()
        self.runtime = LambdaRuntime(self.functions, stack.region)
        self._overrides = environment_overrides or {}
        self._server: Any = None
        self._undo: list[Callable[[], None]] = []
        self.endpoint = ""

    def start(self) -> None:
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        # moto's ASL interpreter logs every failed state at length; the run's error says it once.
        logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        sandbox_context()
        config = mock.patch.dict(default_user_config, EMULATOR_CONFIG)
        config.start()
        self._undo = [config.stop, _serve_moto_faster()]
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self._set_environment(port)
        self._undo += [_route_lambda_to(self.runtime), _keep_task_failure_causes()]
        self._create_tables()
        if self.journal is not None:
            self.restored_items = restore_tables(self.journal, self.stack.region)
        self._undo.append(_make_item_access_atomic(self.journal))
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
        client = boto3.client("stepfunctions", region_name=self.stack.region)
        text = self._definition(definition, substitutions)
        created = client.create_state_machine(name=name, definition=text, roleArn=self._role, type="STANDARD")
        return str(created["stateMachineArn"])

    @staticmethod
    def _definition(definition: Path, substitutions: dict[str, str]) -> str:
        text = definition.read_text()
        for key, value in substitutions.items():
            text = text.replace("${" + key + "}", value)
        return text

    def put_state_machine(self, name: str, definition: Path) -> None:
        """Create a state machine, or give an existing one the definition file as it now stands."""
        client = boto3.client("stepfunctions", region_name=self.stack.region)
        arn = f"arn:aws:states:{self.stack.region}:{ACCOUNT_ID}:stateMachine:{name}"
        try:
            client.describe_state_machine(stateMachineArn=arn)
        except client.exceptions.StateMachineDoesNotExist:
            self.create_state_machine(name, definition, self.substitutions)
            return
        client.update_state_machine(stateMachineArn=arn, definition=self._definition(definition, self.substitutions))

    def stop(self) -> None:
        for poller in getattr(self, "_pollers", []):
            poller.stop()
        self.runtime.stop()
        if self._server is not None:
            self._server.stop()
        for undo in reversed(self._undo):
            undo()
        if self.journal is not None:
            self.journal.close()

    def _set_environment(self, port: int) -> None:
        """This process and every sandbox reach the emulator on its endpoint, with credentials
        that are not anyone's; the sandboxes also get the stack's overrides. This process holds
        the functions' variables too, for the local tools that use the core directly."""
        shared = {
            **LOCAL_CREDENTIALS,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": self.stack.region,
            "AWS_REGION": self.stack.region,
            "MOTO_PORT": str(port),  # where moto's ASL interpreter sends its own AWS calls
        }
        for spec in self.functions:
            os.environ.update(spec.environment)
        os.environ.update({**shared, **self._overrides})
        inherited = {name: value for name, value in os.environ.items() if name in ("PATH", "HOME", "LANG", "TZ")}
        self.runtime.environment = {**inherited, **shared, **self._overrides}

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
            bundle.writestr("app.py", "# local mode runs the handler in functions/ in its own sandboxes\n")
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
