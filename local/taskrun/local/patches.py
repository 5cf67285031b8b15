"""Where moto 5.2.5 falls short of AWS in what taskrun relies on, local mode mends it.

Each mend patches a moto class in this process and returns its undo.
"""

from __future__ import annotations

import collections
import functools
import importlib.util
import json
import re
import sys
import threading
import uuid
from collections.abc import Callable
from typing import Any
from unittest import mock

from moto.core.exceptions import JsonRESTError
from moto.dynamodb.models.dynamo_type import DynamoType

from taskrun.local.durable import AlreadyStarted, DurableEngine
from taskrun.local.faults import Faults
from taskrun.local.iam import AccessDenied, Judge
from taskrun.local.journal import Journal
from taskrun.local.lambdas import LambdaRuntime
from taskrun.local.resources import ACCOUNT_ID, FunctionSpec
from taskrun.local.sandbox import FunctionError, InvokeRefused

DURABLE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def mend(target: Any, **attributes: Any) -> Callable[[], None]:
    """Set attributes of a moto class for as long as the stack runs; return the undo."""
    patcher = mock.patch.multiple(target, **attributes)
    patcher.start()
    return patcher.stop


def batch_without_its_models() -> None:
    """Keep EC2's models out of the stack's process until something asks for Batch.

    moto's Step Functions interpreter imports `moto.batch.utils` for one enum, and the
    `moto.batch` package imports its models, which import EC2's, which load every region's
    instance types and build EC2's botocore model: about 60 MB resident in the stack's
    process for services taskrun never calls. The package is registered here without running
    its `__init__`; its backends still load on first use (moto looks them up by attribute)."""
    if "moto.batch" in sys.modules:
        return
    spec = importlib.util.find_spec("moto.batch")
    if spec is None or spec.loader is None:
        return
    package = importlib.util.module_from_spec(spec)

    def backends(name: str) -> Any:  # PEP 562: what the package's __init__ would have imported
        if name == "batch_backends":
            from moto.batch.models import batch_backends

            return batch_backends
        raise AttributeError(f"module 'moto.batch' has no attribute {name!r}")

    package.__getattr__ = backends  # type: ignore[method-assign]
    sys.modules["moto.batch"] = package


def route_lambda_to(runtime: LambdaRuntime, engine: DurableEngine | None = None) -> Callable[[], None]:
    """Make moto's simple Lambda backend call real handlers, and start a durable function's
    execution in the durable engine; return the undo."""
    from moto.awslambda_simple.models import LambdaSimpleBackend

    original = LambdaSimpleBackend.invoke

    def start_execution(spec: FunctionSpec, qualifier: str | None, body: Any, headers: Any) -> str:
        """A durable function's invocation starts (or finds) its named execution: its ARN."""
        if engine is None or spec.durable_timeout is None:
            raise JsonRESTError("ServiceException", "no durable execution engine")
        if headers.get("X-Amz-Invocation-Type") != "Event":
            raise JsonRESTError(
                "InvalidParameterValueException",
                "locally, a durable function is invoked asynchronously (InvocationType Event)",
            )
        name = headers.get("X-Amz-Durable-Execution-Name") or uuid.uuid4().hex
        if not DURABLE_NAME.fullmatch(name):
            raise JsonRESTError("InvalidParameterValueException", "a durable execution's name is 1-64 [A-Za-z0-9-_]")
        text = body.decode() if isinstance(body, bytes) else str(body or "{}")
        version = qualifier or "$LATEST"
        if not version.isdigit() and version != "$LATEST":  # an alias: the version it points at now
            settle = engine.settle  # read once: a stop may clear it meanwhile
            if settle is not None:
                try:
                    settle()
                except Exception as error:  # the execution starts on the versions as they are
                    print(f"taskrun local: the tasks could not be reloaded: {error}", file=sys.stderr, flush=True)
            version = runtime.latest_version(spec.logical_id) or "$LATEST"
        try:
            return engine.start_execution(spec.logical_id, version, name, text, spec.durable_timeout)
        except AlreadyStarted as error:
            refused = JsonRESTError("DurableExecutionAlreadyStartedException", str(error))
            refused.code = 409
            raise refused from None
        except Exception as error:  # the service failing answers at once, as Lambda's 500 does
            failed = JsonRESTError("ServiceException", f"the durable execution service failed: {error}")
            failed.code = 500
            raise failed from None

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
        spec = runtime.spec(function_name)
        if spec is not None and spec.durable_timeout is not None:
            named = function_name.split(":function:")[-1].split(":")  # name[:qualifier], or an ARN's
            qualifier = qualifier or (named[1] if len(named) > 1 else None)
            response_headers["X-Amz-Durable-Execution-Arn"] = start_execution(spec, qualifier, body, headers)
            return b""
        event = json.loads(body) if body else {}
        try:
            if headers.get("X-Amz-Invocation-Type") == "Event":
                runtime.invoke_async(function_name, event)
                return b""
            return runtime.invoke_text(function_name, json.dumps(event)).encode()
        except InvokeRefused as error:  # an error of the Invoke call, such as 429 when throttled
            refused = JsonRESTError(error.payload["errorType"], str(error))
            refused.code = error.status
            raise refused from None
        except FunctionError as error:
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps(error.payload).encode()

    return mend(LambdaSimpleBackend, invoke=invoke)


def make_item_access_atomic(journal: Journal | None, faults: Faults | None = None) -> Callable[[], None]:
    """DynamoDB checks a write's condition and applies it as one step, and a read never sees
    half a write; moto, under concurrent threads, does neither (a reader could see a run's
    new status before its result). Its item operations are serialised here, and each write
    is recorded in the journal, if there is one, before it answers. Return the undo."""
    from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX, DynamodbException
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    reads = ("get_item", "query", "scan", "batch_get_item")
    writes = ("put_item", "update_item", "delete_item", "transact_write_items")
    originals = {name: getattr(DynamoDBBackend, name) for name in (*reads, *writes)}

    def serialised(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def operation(backend: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
            if faults is not None and name in writes and name != "transact_write_items":
                table_name = str(kwargs.get("table_name", args[0] if args else ""))
                if faults.strikes("throttle_writes", table_name):
                    raise DynamodbException(
                        ERROR_TYPE_PREFIX + "ProvisionedThroughputExceededException",
                        "The level of configured provisioned throughput for the table was exceeded (an injected fault)",
                    )
            with lock:
                answer = original(backend, *args, **kwargs)
                if journal is not None and name in writes:
                    _record(journal, backend, name, answer, args, kwargs)
                return answer

        return operation

    return mend(DynamoDBBackend, **{name: serialised(name, original) for name, original in originals.items()})


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


def serve_moto_faster() -> Callable[[], None]:
    """moto's server looks up the backend of every request by scanning its modules, sends
    headers and body in separate writes that Nagle's algorithm may hold back, and answers
    each DynamoDB attribute value by looking up every member of its shape under several
    spellings (most of its time for an item), and lists a handler class's methods on every
    request, and parses an UpdateItem's update expression twice a request (its tokens and
    tree built anew each time: a tenth of the stack's CPU in a burst of runs), and splits a
    condition expression into its tokens with six regular expressions a token (a twentieth):
    remember each host's backend, each class's methods, each update expression's tree (which
    moto's validator copies before it fills it in) and each condition's tokens (handed out
    as new nodes, the parse goes on from them with the call's own names and values), send at
    once, and write an attribute value, already in its wire form, as it is (binary in base64,
    as moto's serializer writes it). Return the undo."""
    from moto.core import responses
    from moto.core.serialize import BaseJSONSerializer
    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser  # type: ignore[attr-defined]
    from moto.moto_server.threaded_moto_server import MotoRequestHandler
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.get_backend_for_host
    original_structure = BaseJSONSerializer._serialize_type_structure
    original_method_names = responses.method_names_from_class
    original_make = UpdateExpressionParser.make
    original_lex = ConditionExpressionParser._lex_condition_expression
    known: dict[str | None, Any] = {}

    @functools.lru_cache(maxsize=PARSED_EXPRESSIONS_KEPT)
    def tokens_of(expression: str) -> tuple[Any, ...]:
        return tuple(original_lex(ConditionExpressionParser(expression, {}, {})))

    def lex(self: ConditionExpressionParser) -> Any:
        return collections.deque(node._replace(children=[]) for node in tokens_of(self.condition_expression))

    def wire(serializer: BaseJSONSerializer, value: dict[str, Any]) -> dict[str, Any]:
        kind, member = next(iter(value.items()))
        if kind == "B":
            return {kind: serializer._base64(member)}
        if kind == "BS":
            return {kind: [serializer._base64(each) for each in member]}
        if kind == "M":
            return {kind: {name: wire(serializer, each) for name, each in member.items()}}
        if kind == "L":
            return {kind: [wire(serializer, each) for each in member]}
        return {kind: member}

    def serialize_structure(self: BaseJSONSerializer, serialized: Any, value: Any, shape: Any, key: str) -> None:
        if shape.name == "AttributeValue" and key and _in_wire_form(value):
            serialized[key] = wire(self, value)
        else:
            original_structure(self, serialized, value, shape, key)

    def get_backend_for_host(self: DomainDispatcherApplication, host: str | None) -> Any:
        if host not in known:
            known[host] = original(self, host)
        return known[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]
    MotoRequestHandler.disable_nagle_algorithm = True
    BaseJSONSerializer._serialize_type_structure = serialize_structure  # type: ignore[method-assign]
    responses.method_names_from_class = functools.cache(original_method_names)
    parsed = functools.lru_cache(maxsize=PARSED_EXPRESSIONS_KEPT)(original_make.__func__)
    UpdateExpressionParser.make = classmethod(parsed)  # type: ignore[assignment,method-assign,arg-type]
    ConditionExpressionParser._lex_condition_expression = lex  # type: ignore[method-assign]

    def undo() -> None:
        UpdateExpressionParser.make = original_make  # type: ignore[method-assign]
        ConditionExpressionParser._lex_condition_expression = original_lex  # type: ignore[method-assign]
        DomainDispatcherApplication.get_backend_for_host = original  # type: ignore[method-assign]
        MotoRequestHandler.disable_nagle_algorithm = False
        BaseJSONSerializer._serialize_type_structure = original_structure  # type: ignore[method-assign]
        responses.method_names_from_class = original_method_names

    return undo


def refuse_bad_conditions() -> Callable[[], None]:
    """A condition expression moto's parser cannot read (`n < < :v`) fails in moto with a
    Python ValueError, which its server answers 500; DynamoDB answers 400, a
    ValidationException naming the syntax error. Answer as DynamoDB does. Return the undo."""
    from moto.dynamodb.comparisons import ConditionExpressionParser
    from moto.dynamodb.exceptions import MockValidationException

    original = ConditionExpressionParser.parse

    class SyntaxRefused(MockValidationException, ValueError):
        """The 400 a write's condition gets; still the ValueError with moto's own words that
        a Query's or Scan's filter is caught as (moto answers those "Bad Filter Expression")."""

        def __init__(self, error: Exception) -> None:
            super().__init__(f"Invalid ConditionExpression: Syntax error; {error}")
            self.words = str(error)

        def __str__(self) -> str:
            return self.words

    def parse(self: ConditionExpressionParser) -> Any:
        try:
            return original(self)
        except (ValueError, IndexError) as error:
            raise SyntaxRefused(error) from error

    ConditionExpressionParser.parse = parse  # type: ignore[method-assign]

    def undo() -> None:
        ConditionExpressionParser.parse = original  # type: ignore[method-assign]

    return undo


PARSED_EXPRESSIONS_KEPT = 1024  # the stack's own writes use a few dozen expression texts

_SCALARS: dict[str, type | tuple[type, ...]] = {"S": str, "N": str, "BOOL": bool, "NULL": bool, "B": (bytes, str)}
_SETS: dict[str, type | tuple[type, ...]] = {"SS": str, "NS": str, "BS": (bytes, str)}


def _in_wire_form(value: Any) -> bool:
    """Whether a value is one attribute value as DynamoDB's JSON has it (one type, its value
    of that type), all the way down; anything else goes to moto's own serializer."""
    if not isinstance(value, dict) or len(value) != 1:
        return False
    kind, member = next(iter(value.items()))
    if kind in _SCALARS:
        return isinstance(member, _SCALARS[kind])
    if kind in _SETS:
        return isinstance(member, list) and all(isinstance(each, _SETS[kind]) for each in member)
    if kind == "M":
        return isinstance(member, dict) and all(_in_wire_form(each) for each in member.values())
    if kind == "L":
        return isinstance(member, list) and all(_in_wire_form(each) for each in member)
    return False


def signal_stream_records(signals: dict[str, list[threading.Event]]) -> Callable[[], None]:
    """Set a table's events as its stream takes a record, so that its pollers sleep while
    nothing changes instead of asking ten times a second. Return the undo."""
    from moto.dynamodb.models import Item
    from moto.dynamodb.models.table import StreamShard

    original = StreamShard.add

    def add(self: StreamShard, old: Item | None, new: Item | None) -> None:
        original(self, old, new)
        for signal in signals.get(self.table.name, []):
            signal.set()

    return mend(StreamShard, add=add)


def usage_plan_keys_as_api_gateway() -> Callable[[], None]:
    """Deleting a usage-plan key that is not there is API Gateway's NotFoundException (moto
    fails on it), and deleting an API key takes it out of every usage plan, as API Gateway does."""
    from moto.apigateway.exceptions import NotFoundException
    from moto.apigateway.models import APIGatewayBackend

    delete_plan_key, delete_key = APIGatewayBackend.delete_usage_plan_key, APIGatewayBackend.delete_api_key

    def delete_usage_plan_key(self: APIGatewayBackend, usage_plan_id: str, key_id: str) -> None:
        if key_id not in self.usage_plan_keys.get(usage_plan_id, {}):
            raise NotFoundException("Invalid Usage Plan Key identifier specified")
        delete_plan_key(self, usage_plan_id, key_id)

    def delete_api_key(self: APIGatewayBackend, api_key_id: str) -> None:
        delete_key(self, api_key_id)
        for plan_keys in self.usage_plan_keys.values():
            plan_keys.pop(api_key_id, None)

    return mend(APIGatewayBackend, delete_usage_plan_key=delete_usage_plan_key, delete_api_key=delete_api_key)


def enforce_iam(judge: Judge) -> Callable[[], None]:
    """Judge every request moto serves by the IAM policies of the function that signed it
    (taskrun.local.iam); a refusal answers AWS's AccessDenied in the service's own shape. (A
    state machine's own calls are judged as its role: taskrun.local.stepfunctions.)"""
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.s3.exceptions import S3AccessDeniedError
    from moto.s3.models import s3_backends

    def object_exists(arn: str) -> bool:
        bucket_name, _, key = arn.removeprefix("arn:aws:s3:::").partition("/")
        bucket = s3_backends[ACCOUNT_ID]["aws"].buckets.get(bucket_name)
        return bucket is not None and key in bucket.keys

    judge.object_exists = object_exists

    def authorize(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        if getattr(self, "method", "") == "OPTIONS":
            return  # a browser's CORS preflight is signed by no one: S3 answers it from the bucket's rules
        try:
            action = self._get_action()
        except Exception:  # an operation moto cannot name: not a call of taskrun's
            return
        try:
            judge.judge(self, action, resource)
        except AccessDenied as denied:
            if denied.call.action.startswith("s3:"):
                raise S3AccessDeniedError() from denied
            code = "AccessDenied" if denied.call.action.startswith("sqs:") else "AccessDeniedException"
            raise JsonRESTError(code, str(denied)) from denied

    return mend(ActionAuthenticatorMixin, _authenticate_and_authorize_action=authorize)
