"""API Gateway (REST) in front of the local functions: HTTP in, complete proxy events out.

Routes come from the template's `Api` events; routes with the default authorizer go
through the authorizer function first, whose refusals answer with the template's own
gateway responses.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from taskrun.local.lambdas import LambdaRuntime
from taskrun.local.sandbox import FunctionError, InvokeRefused
from taskrun.local.template import ACCOUNT_ID, Route, Stack

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
MAX_EVENT_BYTES = 6 * 1024 * 1024  # Lambda's synchronous payload limit
READ_TIMEOUT_SECONDS = 30.0
INTEGRATION_TIMEOUT_SECONDS = 29.0  # API Gateway's default; the function goes on past it
LISTEN_BACKLOG = 1024
STAGE = "local"
TEXT_TYPES = ("application/json", "application/problem+json", "text/", "application/xml", "application/javascript")


@dataclass
class GatewayResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def _problem(status: HTTPStatus, detail: str) -> GatewayResponse:
    body: dict[str, Any] = {
        "type": f"urn:taskrun:problem:{status.phrase.lower().replace(' ', '-')}",
        "title": status.phrase,
        "status": status.value,
        "detail": detail,
        "errors": [],
    }
    return GatewayResponse(status.value, {"Content-Type": "application/problem+json"}, json.dumps(body).encode())


class Gateway:
    """Turns one HTTP request into the proxy event the function behind the route receives."""

    def __init__(self, stack: Stack, runtime: LambdaRuntime) -> None:
        self.stack = stack
        self.runtime = runtime
        self.routes = stack.routes()
        self.authorizer = stack.authorizer_function()
        self.gateway_responses = stack.gateway_responses()
        self._integrations = ThreadPoolExecutor(max_workers=LISTEN_BACKLOG, thread_name_prefix="integration")

    def handle(
        self, method: str, target: str, headers: Mapping[str, str], body: bytes, source_ip: str = "127.0.0.1"
    ) -> GatewayResponse:
        url = urlsplit(target)
        path = unquote(url.path)
        if len(body) > MAX_BODY_BYTES:
            return self.gateway_response("REQUEST_TOO_LARGE", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        matches = [(route, route.pattern.match(path)) for route in self.routes]
        on_path = [(route, match) for route, match in matches if match]
        if not on_path:
            return _problem(HTTPStatus.NOT_FOUND, f"no route for {path}")
        chosen = next(((route, match) for route, match in on_path if route.method == method), None)
        if chosen is None:
            allowed = ", ".join(sorted({route.method for route, _ in on_path}))
            response = _problem(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}")
            response.headers["Allow"] = allowed
            return response
        route, match = chosen
        event = self._proxy_event(route, method, path, url.query, headers, body, match.groupdict(), source_ip)
        if route.authorized and self.authorizer:
            refusal = self._authorize(event)
            if refusal is not None:
                return refusal
        event_text = json.dumps(event)
        if len(event_text) > MAX_EVENT_BYTES:
            return self.gateway_response("REQUEST_TOO_LARGE", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        invocation = self._integrations.submit(self.runtime.invoke_text, route.function, event_text)
        try:
            answer = json.loads(invocation.result(timeout=INTEGRATION_TIMEOUT_SECONDS))
        except TimeoutError:
            detail = f"the function did not answer within {INTEGRATION_TIMEOUT_SECONDS:g} s; it may still be running"
            return _problem(HTTPStatus.GATEWAY_TIMEOUT, detail)
        except FunctionError as error:
            if isinstance(error, InvokeRefused) and error.throttled:
                return self.gateway_response("THROTTLED", HTTPStatus.TOO_MANY_REQUESTS)
            print(f"{route.function} failed: {error.payload['errorType']}: {error}", flush=True)
            return _problem(HTTPStatus.BAD_GATEWAY, "the function behind this route failed")
        return self._from_proxy_result(answer)

    def _authorize(self, event: dict[str, Any]) -> GatewayResponse | None:
        assert self.authorizer is not None
        request = {
            "type": "REQUEST",
            "methodArn": (
                f"arn:aws:execute-api:{self.stack.region}:{ACCOUNT_ID}:local/{STAGE}/"
                f"{event['httpMethod']}{event['resource']}"
            ),
            **{key: event[key] for key in ("resource", "path", "httpMethod", "headers", "multiValueHeaders")},
            **{key: event[key] for key in ("queryStringParameters", "pathParameters", "requestContext")},
        }
        try:
            policy = self.runtime.invoke(self.authorizer, request)
        except FunctionError as error:
            if str(error) == "Unauthorized":
                return self.gateway_response("UNAUTHORIZED", HTTPStatus.UNAUTHORIZED)
            if isinstance(error, InvokeRefused) and error.throttled:
                return self.gateway_response("THROTTLED", HTTPStatus.TOO_MANY_REQUESTS)
            print(f"the authorizer failed: {error.payload['errorType']}: {error}", flush=True)
            return self.gateway_response("AUTHORIZER_FAILURE", HTTPStatus.INTERNAL_SERVER_ERROR)
        statements = policy.get("policyDocument", {}).get("Statement", [])
        if not any(statement.get("Effect") == "Allow" for statement in statements):
            return self.gateway_response("ACCESS_DENIED", HTTPStatus.FORBIDDEN)
        event["requestContext"]["authorizer"] = {
            "principalId": policy.get("principalId"),
            **policy.get("context", {}),
        }
        return None

    def gateway_response(self, kind: str, status: HTTPStatus) -> GatewayResponse:
        if kind in self.gateway_responses:
            code, body = self.gateway_responses[kind]
            return GatewayResponse(code, {"Content-Type": "application/problem+json"}, body.encode())
        return _problem(status, status.description)

    def _proxy_event(
        self,
        route: Route,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        path_parameters: dict[str, str],
        source_ip: str,
    ) -> dict[str, Any]:
        multi_headers: dict[str, list[str]] = {}
        for name, value in headers.items():
            multi_headers.setdefault(name, []).append(value)
        multi_query: dict[str, list[str]] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            multi_query.setdefault(name, []).append(value)
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        is_text = not content_type or content_type.startswith(TEXT_TYPES)
        try:
            text_body = body.decode() if is_text else None
        except UnicodeDecodeError:
            text_body = None
        now = time.time()
        return {
            "resource": route.path,
            "path": path,
            "httpMethod": method,
            "headers": {name: values[-1] for name, values in multi_headers.items()} or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": path_parameters or None,
            "stageVariables": None,
            "requestContext": {
                "accountId": ACCOUNT_ID,
                "apiId": "local",
                "resourceId": route.function,
                "resourcePath": route.path,
                "httpMethod": method,
                # served at the root, as API Gateway serves a custom domain with no base path
                "path": path,
                "stage": STAGE,
                "protocol": "HTTP/1.1",
                "requestId": str(uuid.uuid4()),
                "extendedRequestId": str(uuid.uuid4()),
                "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "requestTimeEpoch": int(now * 1000),
                "domainName": headers.get("Host", "localhost"),
                "identity": {
                    "sourceIp": source_ip,
                    "userAgent": next((v for k, v in headers.items() if k.lower() == "user-agent"), None),
                },
            },
            "body": (text_body if text_body is not None else base64.b64encode(body).decode()) if body else None,
            "isBase64Encoded": bool(body) and text_body is None,
        }

    @staticmethod
    def _from_proxy_result(answer: Any) -> GatewayResponse:
        if not isinstance(answer, dict) or "statusCode" not in answer:
            return _problem(HTTPStatus.BAD_GATEWAY, "the function returned no proxy response")
        headers = {name: str(value) for name, value in (answer.get("headers") or {}).items()}
        for name, values in (answer.get("multiValueHeaders") or {}).items():
            headers[name] = ", ".join(str(value) for value in values)
        raw = answer.get("body") or ""
        body = base64.b64decode(raw) if answer.get("isBase64Encoded") else raw.encode()
        return GatewayResponse(int(answer["statusCode"]), headers, body)


class GatewayServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = LISTEN_BACKLOG  # a burst of connections waits to be accepted, not reset


def make_server(
    gateway: Gateway, host: str, port: int, log: bool = True, read_timeout: float = READ_TIMEOUT_SECONDS
) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in separate writes
        server_version = "taskrun-local"
        timeout = read_timeout  # a client that stops sending is dropped

        def _serve(self) -> None:
            started = time.perf_counter()
            response = self._read_body_and_handle()
            self._send(response)
            if log:
                elapsed = (time.perf_counter() - started) * 1000
                print(
                    f"{self.client_address[0]} {self.command} {self.path} {response.status} {elapsed:.0f}ms", flush=True
                )

        def _read_body_and_handle(self) -> GatewayResponse:
            """API Gateway's checks on the request itself come first, from the headers alone."""
            lengths = self.headers.get_all("Content-Length") or []
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                return _problem(HTTPStatus.BAD_REQUEST, "send the body with a Content-Length, not chunked")
            if len(set(lengths)) > 1 or any(not value.strip().isdigit() for value in lengths):
                self.close_connection = True
                return _problem(HTTPStatus.BAD_REQUEST, "the Content-Length header is not a single whole number")
            length = int(lengths[0]) if lengths else 0
            if length > MAX_BODY_BYTES:
                self.close_connection = True  # the body is never read
                return gateway.gateway_response("REQUEST_TOO_LARGE", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            try:
                body = self.rfile.read(length) if length else b""
            except TimeoutError:
                body = b""
            if len(body) < length:
                self.close_connection = True
                return _problem(HTTPStatus.REQUEST_TIMEOUT, "the request body did not arrive in time")
            try:
                return gateway.handle(self.command, self.path, dict(self.headers.items()), body, self.client_address[0])
            except Exception as error:  # a fault of the gateway itself still answers, and says so
                print(f"the local gateway failed: {type(error).__name__}: {error}", flush=True)
                return _problem(HTTPStatus.INTERNAL_SERVER_ERROR, "the local gateway failed; see its log")

        def _send(self, response: GatewayResponse) -> None:
            try:
                self.send_response_only(response.status)
                for name, value in response.headers.items():
                    if name.lower() not in ("content-length", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(response.body)))
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(response.body)
            except OSError:
                self.close_connection = True  # the client went away

        def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
            """Errors of the HTTP layer itself (a bad request line, headers too long, an unknown
            method) answer problem+json like every other error."""
            self.close_connection = True
            self.request_version = self.protocol_version  # a request line that did not parse reads as HTTP/0.9
            status = HTTPStatus(code)
            self._send(_problem(status, explain or message or status.description))

        def __getattr__(self, name: str) -> Any:
            if name.startswith("do_"):  # any method: the gateway answers 405 where no route takes it
                return self._serve
            raise AttributeError(name)

        def log_message(self, format: str, *args: Any) -> None:
            """Requests are logged once, by _serve."""

    return GatewayServer((host, port), Handler)
