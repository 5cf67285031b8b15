"""The AWS emulator of local mode: moto 5.2.5 served over HTTP from this process, with
Lambda routed to the real handlers in their sandboxes (taskrun.local.lambdas).

moto's simple Lambda backend only echoes payloads; here its `invoke` runs the function
named in the template instead: synchronously for RequestResponse, queued for Event (as
Lambda's asynchronous invoke would). Everything, this process and the sandboxes alike,
reaches the emulator on its endpoint (AWS_ENDPOINT_URL), as it would reach AWS; this
process's own calls to it are handed to its WSGI app in process, the same request without
the socket.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock
from urllib.parse import unquote, urlsplit

from taskrun import aws
from taskrun.local.durable import DurableEngine, durable_api
from taskrun.local.iam import AccessDenied, Judge, role_cache, role_policies
from taskrun.local.journal import Journal, restore_tables
from taskrun.local.lambdas import LambdaRuntime
from taskrun.local.patches import (
    batch_without_its_models,
    enforce_iam,
    make_item_access_atomic,
    refuse_bad_conditions,
    route_lambda_to,
    serve_moto_faster,
    signal_stream_records,
    usage_plan_keys_as_api_gateway,
)
from taskrun.local.resources import ACCOUNT_ID
from taskrun.local.sandbox import sandbox_context
from taskrun.local.stepfunctions import (
    jsonpaths_parsed_once,
    lambda_steps_take_an_invocation_type,
    states_call_as_their_role,
    task_tokens_as_step_functions,
    waits_until_their_timestamp,
)
from taskrun.local.template import Stack

if TYPE_CHECKING:
    from moto.core.config import DefaultConfig

EMULATOR_CONFIG: DefaultConfig = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}


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
        self.durable = DurableEngine(self.runtime, stack.region, data_dir)
        self._overrides = environment_overrides or {}
        self._server: Any = None
        self._clients: dict[str, Any] = {}
        self._clients_made = threading.Lock()
        self._undo: list[Callable[[], None]] = []
        self.endpoint = ""

    def aws(self, service: str) -> Any:
        """This process's client of a service of the emulator, made once (a client takes 10-20 ms
        to make, most of it reading the service's model), from the session the core's stores
        use in this process, so that each service's model is read once."""
        with self._clients_made:
            if service not in self._clients:
                made = aws.session().client(service, region_name=self.stack.region)  # type: ignore[call-overload]
                self._clients[service] = made
            return self._clients[service]

    def start(self) -> None:
        batch_without_its_models()  # before anything imports moto's Step Functions interpreter
        from moto.core.config import default_user_config
        from moto.server import ThreadedMotoServer

        # moto's ASL interpreter logs every failed state at length; the run's error says it once.
        logging.getLogger("moto.stepfunctions").setLevel(logging.CRITICAL)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        sandbox_context()
        config = mock.patch.dict(default_user_config, EMULATOR_CONFIG)
        config.start()
        self._undo = [config.stop, serve_moto_faster(), refuse_bad_conditions()]
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        wsgi = self._server._server
        wsgi.app = durable_api(wsgi.app, self.durable)  # Lambda's durable execution API, beside moto
        self._undo.append(self._served_in_process(wsgi.app))
        self._set_environment(port)
        boundaries: dict[str, list[dict[str, Any]]] = {}
        self.iam = Judge(role_policies(self.stack, boundaries, role_cache()), boundaries)
        self.runtime.credentials = {spec.logical_id: self.iam.credentials(spec.logical_id) for spec in self.functions}
        self._undo += [
            route_lambda_to(self.runtime, self.durable),
            task_tokens_as_step_functions(),
            usage_plan_keys_as_api_gateway(),
            waits_until_their_timestamp(),
            lambda_steps_take_an_invocation_type(),
            jsonpaths_parsed_once(),
        ]
        self._undo.append(enforce_iam(self.iam))
        self.durable.judge = self._judge_durable
        self._undo.append(states_call_as_their_role(self.iam))
        self._create_tables()
        if self.journal is not None:
            self.restored_items = restore_tables(self.journal, self.stack.region)
        self._undo.append(make_item_access_atomic(self.journal, self.runtime.faults))
        self._create_functions()
        self._create_queues()
        self._create_usage_plans()
        from taskrun.local.events import EventBus, QueuePoller, Schedules, StreamPoller, publish_execution_ends

        self.bus = EventBus(self.stack.event_rules(), self.runtime, self.stack.region)
        self._undo.append(publish_execution_ends(self.bus))
        self.substitutions: dict[str, str] = {}
        for machine in self.stack.state_machines():
            self.create_state_machine(machine.name, machine.definition, machine.substitutions, machine.role)
            self.substitutions.update(machine.substitutions)
        signals: dict[str, list[threading.Event]] = {}
        self._pollers: list[StreamPoller | QueuePoller] = []
        for source in self.stack.stream_sources():
            records = threading.Event()
            signals.setdefault(source.table, []).append(records)
            self._pollers.append(StreamPoller(source, self.runtime, self.stack.region, records))
        self._undo.append(signal_stream_records(signals))
        self._pollers += [QueuePoller(source, self.runtime, self.stack.region) for source in self.stack.queue_sources()]
        for poller in self._pollers:
            poller.start()
        self.schedules = Schedules(self.stack.schedules(), self.runtime, self.stack.region)
        self.schedules.start()
        self.resumed_executions = self.durable.start()

    def _served_in_process(self, app: Callable[..., Any]) -> Callable[[], None]:
        """This process's own AWS calls (the stack's setup, its pollers, the core's stores used
        here, the state machines' steps, moto's own clients) are handed to the emulator's
        WSGI app in this process, as the request its HTTP server would have made of them (the
        same path, headers and body: IAM judges the same signature), with no socket and no
        HTTP parsing on either side: about half the CPU of such a call. Every botocore
        session made in this process from now on sends them so (botocore's built-in
        handlers), and so do the ones made already. The sandboxes, other processes, still
        call over HTTP."""
        import boto3
        import botocore.handlers

        host, _, port = self.endpoint.removeprefix("http://").partition(":")
        ours = {f"{host}:{port}", f"localhost:{port}"}

        serving = [True]  # until the undo: a session made meanwhile keeps the handler for good

        def send(request: Any, **_: Any) -> Any:
            if not serving[0] or urlsplit(request.url).netloc not in ours:
                return None  # not this emulator's (or it stopped): botocore sends it as usual
            return call_wsgi(app, request, host, port)

        self.in_process_send = send
        # the sessions made already (botocore calls every before-send handler: registered twice,
        # a call would be made twice)
        made = [session for session in (boto3.DEFAULT_SESSION,) if session is not None]
        if aws.session.cache_info().currsize:
            made.append(aws.session())
        entry = ("before-send", send)
        botocore.handlers.BUILTIN_HANDLERS.append(entry)
        for session in made:
            session.events.register("before-send", send)

        def undo() -> None:
            serving[0] = False
            if entry in botocore.handlers.BUILTIN_HANDLERS:  # a second stop finds it gone
                botocore.handlers.BUILTIN_HANDLERS.remove(entry)
            for session in made:
                session.events.unregister("before-send", send)

        return undo

    def _judge_durable(self, caller: Any, action: str, resource: str) -> None:
        """IAM's judgement of a call to the durable execution API, refused as Lambda refuses."""
        try:
            self.iam.judge(caller, action, resource)
        except AccessDenied as denied:
            from taskrun.local.durable_engine import AccessDeniedException  # the engine is up: it asks

            raise AccessDeniedException(str(denied)) from denied

    def create_state_machine(
        self, name: str, definition: Path, substitutions: dict[str, str], role: str | None = None
    ) -> str:
        """Create a state machine from an ASL file, with `${Name}` substitutions as SAM makes them."""
        client = self.aws("stepfunctions")
        text = self._definition(definition, substitutions)
        role = role or self.stack.flow_role() or self._role  # a flow of a tasks directory: the flows' role
        created = client.create_state_machine(name=name, definition=text, roleArn=role, type="STANDARD")
        return str(created["stateMachineArn"])

    @staticmethod
    def _definition(definition: Path, substitutions: dict[str, str]) -> str:
        text = definition.read_text()
        for key, value in substitutions.items():
            text = text.replace("${" + key + "}", value)
        return text

    def put_state_machine(self, name: str, definition: Path) -> None:
        """Create a state machine, or give an existing one the definition file as it now stands."""
        client = self.aws("stepfunctions")
        arn = f"arn:aws:states:{self.stack.region}:{ACCOUNT_ID}:stateMachine:{name}"
        try:
            client.describe_state_machine(stateMachineArn=arn)
        except client.exceptions.StateMachineDoesNotExist:
            self.create_state_machine(name, definition, self.substitutions)
            return
        client.update_state_machine(stateMachineArn=arn, definition=self._definition(definition, self.substitutions))

    def stop(self) -> None:
        if hasattr(self, "iam") and os.environ.get("TASKRUN_IAM_CALLS"):
            self.iam.write(Path(os.environ["TASKRUN_IAM_CALLS"]))  # the distinct calls judged, for review
        for poller in getattr(self, "_pollers", []):
            poller.stop()
        if hasattr(self, "schedules"):
            self.schedules.stop()
        self.durable.stop()
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
        dynamodb = self.aws("dynamodb")
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

    def _create_queues(self) -> None:
        """Queues, buckets and schedule groups."""
        sqs = self.aws("sqs")
        for queue in self.stack.queues():
            sqs.create_queue(QueueName=queue.name, Attributes=queue.attributes)
        s3 = self.aws("s3")
        for bucket, rules in self.stack.bucket_cors().items():
            s3.create_bucket(Bucket=bucket)
            if rules:
                s3.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": rules})
        scheduler = self.aws("scheduler")
        for group in self.stack.schedule_groups():
            scheduler.create_schedule_group(Name=group)

    def _create_usage_plans(self) -> None:
        """The template's usage plans and API keys, each with its logical id as its id (what
        a Ref to it reads as here)."""
        from moto.apigateway.utils import ApigwApiKeyIdentifier, ApigwUsagePlanIdentifier

        from taskrun.local.usage import with_id

        apigateway = self.aws("apigateway")
        for logical_id, resource_type, properties in self.stack.usage_plan_resources():
            if resource_type == "AWS::ApiGateway::UsagePlan":
                name = properties.get("UsagePlanName", logical_id)
                with_id(ApigwUsagePlanIdentifier(ACCOUNT_ID, self.stack.region, name), logical_id)
                throttle = properties.get("Throttle", {})
                apigateway.create_usage_plan(
                    name=name,
                    throttle={
                        **({"rateLimit": float(throttle["RateLimit"])} if "RateLimit" in throttle else {}),
                        **({"burstLimit": int(throttle["BurstLimit"])} if "BurstLimit" in throttle else {}),
                    },
                )
            elif resource_type == "AWS::ApiGateway::ApiKey":
                value = properties["Value"]
                with_id(ApigwApiKeyIdentifier(ACCOUNT_ID, self.stack.region, value), logical_id)
                apigateway.create_api_key(
                    name=properties.get("Name", logical_id), value=value, enabled=bool(properties.get("Enabled"))
                )
            else:
                apigateway.create_usage_plan_key(
                    usagePlanId=properties["UsagePlanId"], keyId=properties["KeyId"], keyType=properties["KeyType"]
                )

    def _create_functions(self) -> None:
        iam = self.aws("iam")
        role = iam.create_role(RoleName="taskrun-local", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        self._role = role
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w") as bundle:
            bundle.writestr("app.py", "# local mode runs the handler in functions/ in its own sandboxes\n")
        lambda_client = self.aws("lambda")
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


def call_wsgi(app: Callable[..., Any], request: Any, host: str, port: str) -> Any:
    """botocore's prepared request, answered by a WSGI app in this process: the environ
    werkzeug's server builds for the same request (the raw path kept for the durable API,
    whose ARNs hold an encoded `/`), the answer as botocore reads one off the wire."""
    from botocore.awsrequest import AWSResponse
    from moto.core.botocore_stubber import MockRawResponse

    url = urlsplit(request.url)
    raw_path = url.path + (f"?{url.query}" if url.query else "")
    body = request.body
    if body is None:
        body = b""
    elif isinstance(body, str):
        body = body.encode()
    elif not isinstance(body, bytes | bytearray):  # a stream (an upload)
        body = body.read()
    latin1 = lambda text: text.encode().decode("latin-1")  # noqa: E731 (PEP 3333's "bytes as str")
    environ: dict[str, Any] = {
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": latin1(unquote(url.path)),
        "QUERY_STRING": latin1(url.query),
        "REQUEST_URI": latin1(raw_path),
        "RAW_URI": latin1(raw_path),
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": 0,
        "SERVER_NAME": host,
        "SERVER_PORT": port,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": url.netloc,
    }
    if body or "Content-Length" in request.headers:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in request.headers.items():
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        key = name.upper().replace("-", "_")
        if "_" in name or key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):  # the body is whole, its length set
            continue
        environ[key if key == "CONTENT_TYPE" else f"HTTP_{key}"] = text
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        answer["status"] = int(status.split(" ", 1)[0])
        answer["headers"] = {}
        for name, value in headers:
            kept = answer["headers"].get(name)
            answer["headers"][name] = f"{kept}, {value}" if kept is not None else value
        return lambda data: None

    try:
        chunks = app(environ, start_response)
        try:
            data = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        status, headers = answer["status"], answer["headers"]
    except Exception:  # as the HTTP server answers an app that fails: 500, the error logged
        logging.getLogger("werkzeug").exception("Error on request: %s %s", request.method, raw_path)
        status, headers, data = 500, {"Content-Type": "text/plain"}, b"Internal Server Error"
    return AWSResponse(request.url, status, headers, MockRawResponse(data))
