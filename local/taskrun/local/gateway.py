"""API Gateway (REST) in front of the local functions: HTTP in, complete proxy events out.

Routes come from the template's `Api` events; routes with the default authorizer go
through the authorizer function first, whose refusals answer with the template's own
gateway responses.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import socketserver
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import h11

from taskrun.local.lambdas import LambdaRuntime, sandbox_deadline
from taskrun.local.sandbox import FunctionError, InvokeRefused
from taskrun.local.template import ACCOUNT_ID, Route, Stack
from taskrun.local.throttle import Throttle
from taskrun.local.usage import limits_of

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


def policy_allows(document: Mapping[str, Any], method_arn: str) -> bool:
    """Whether an authorizer's policy lets the request through, as API Gateway judges it: an
    Allow statement whose resource matches the method ARN (`*` any characters, `?` one), and
    no Deny statement that does."""

    def matches(statement: Mapping[str, Any]) -> bool:
        resources = statement.get("Resource", [])
        for resource in [resources] if isinstance(resources, str) else resources:
            pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in str(resource))
            if re.fullmatch(pattern, method_arn, re.DOTALL):  # `*` spans any character, a newline too
                return True
        return False

    statements = document.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    if any(statement.get("Effect") == "Deny" and matches(statement) for statement in statements):
        return False
    return any(statement.get("Effect") == "Allow" and matches(statement) for statement in statements)


class Gateway:
    """Turns one HTTP request into the proxy event the function behind the route receives."""

    def __init__(self, stack: Stack, runtime: LambdaRuntime, throttle: Throttle | None = None) -> None:
        self.stack = stack
        self.runtime = runtime
        self.throttle = throttle
        self.routes = stack.routes()
        self.authorizer = stack.authorizer_function()
        self.gateway_responses = stack.gateway_responses()
        self._integrations = ThreadPoolExecutor(max_workers=LISTEN_BACKLOG, thread_name_prefix="integration")

    def handle(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | Sequence[tuple[str, str]],
        body: bytes,
        source_ip: str = "127.0.0.1",
    ) -> GatewayResponse:
        """`headers` as sent, in order: a name sent twice is in the event's multiValueHeaders twice."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        url = urlsplit(target)
        path = unquote(url.path)
        if len(body) > MAX_BODY_BYTES:
            return self.gateway_response("REQUEST_TOO_LARGE", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        matches = [(route, route.pattern.match(path)) for route in self.routes]
        on_path = [(route, match) for route, match in matches if match]
        if not on_path:
            return self.gateway_response("MISSING_AUTHENTICATION_TOKEN", HTTPStatus.NOT_FOUND)  # REST APIs' answer
        # the most specific resource takes the request, as API Gateway's does: a method it
        # lacks is not looked for on a templated path that matches too (/v1/runs/batch is not
        # /v1/runs/{run_id})
        resource = on_path[0][0].path
        on_path = [(route, match) for route, match in on_path if route.path == resource]
        chosen = next(((route, match) for route, match in on_path if route.method == method), None)
        if chosen is None:
            allowed = ", ".join(sorted({route.method for route, _ in on_path}))
            response = _problem(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}")
            response.headers["Allow"] = allowed
            return response
        route, match = chosen
        if self.throttle is not None and (wait := self.throttle.for_stage()):
            return self.throttled(wait)
        event = self._proxy_event(route, method, path, url.query, pairs, body, match.groupdict(), source_ip)
        wait_until = sandbox_deadline()  # the authorizer's wait for a sandbox and the integration's, in all
        if route.authorized and self.authorizer:
            refusal = self._authorize(event, wait_until)
            if refusal is not None:
                return refusal
        if route.api_key_required:
            # the key source is AUTHORIZER: the usage-plan key is the one the authorizer named
            usage_key = event["requestContext"]["identity"].get("apiKey")
            limits = limits_of(self.stack.region, usage_key)
            if limits is None:
                return self.gateway_response("INVALID_API_KEY", HTTPStatus.FORBIDDEN)
            if self.throttle is not None and (wait := self.throttle.for_key(str(usage_key), *limits)):
                return self.throttled(wait)
        event_text = json.dumps(event)
        if len(event_text) > MAX_EVENT_BYTES:
            return self.gateway_response("REQUEST_TOO_LARGE", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        invocation = self._integrations.submit(self.runtime.invoke_text, route.function, event_text, wait_until)
        try:
            answer = json.loads(invocation.result(timeout=INTEGRATION_TIMEOUT_SECONDS))
        except TimeoutError:
            return self.gateway_response("INTEGRATION_TIMEOUT", HTTPStatus.GATEWAY_TIMEOUT)
        except FunctionError as error:
            if isinstance(error, InvokeRefused) and error.throttled:
                return self.throttled(1)  # every sandbox of the function is busy
            print(f"{route.function} failed: {error.payload['errorType']}: {error}", flush=True)
            return self.gateway_response("INTEGRATION_FAILURE", HTTPStatus.BAD_GATEWAY)
        return self._from_proxy_result(answer)

    def _authorize(self, event: dict[str, Any], wait_until: float) -> GatewayResponse | None:
        assert self.authorizer is not None
        request = {
            "type": "REQUEST",
            "methodArn": (
                f"arn:aws:execute-api:{self.stack.region}:{ACCOUNT_ID}:local/{STAGE}/"
                f"{event['httpMethod']}{event['path']}"  # the path as sent, as API Gateway's ARN holds it
            ),
            **{key: event[key] for key in ("resource", "path", "httpMethod", "headers", "multiValueHeaders")},
            **{key: event[key] for key in ("queryStringParameters", "pathParameters", "requestContext")},
        }
        try:
            policy = self.runtime.invoke(self.authorizer, request, wait_until)
        except FunctionError as error:
            if str(error) == "Unauthorized":
                return self.gateway_response("UNAUTHORIZED", HTTPStatus.UNAUTHORIZED)
            if isinstance(error, InvokeRefused) and error.throttled:
                return self.throttled(1)  # every sandbox of the function is busy
            print(f"the authorizer failed: {error.payload['errorType']}: {error}", flush=True)
            return self.gateway_response("AUTHORIZER_FAILURE", HTTPStatus.INTERNAL_SERVER_ERROR)
        if not policy_allows(policy.get("policyDocument", {}), request["methodArn"]):
            return self.gateway_response("ACCESS_DENIED", HTTPStatus.FORBIDDEN)
        event["requestContext"]["authorizer"] = {
            "principalId": policy.get("principalId"),
            **policy.get("context", {}),
        }
        if policy.get("usageIdentifierKey"):
            event["requestContext"]["identity"]["apiKey"] = policy["usageIdentifierKey"]
        return None

    def throttled(self, retry_after: int) -> GatewayResponse:
        """429 (the template's THROTTLED answer) with the seconds until a token is there."""
        response = self.gateway_response("THROTTLED", HTTPStatus.TOO_MANY_REQUESTS)
        response.headers["Retry-After"] = str(retry_after)
        return response

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
        pairs: list[tuple[str, str]],
        body: bytes,
        path_parameters: dict[str, str],
        source_ip: str,
    ) -> dict[str, Any]:
        multi_headers: dict[str, list[str]] = {}
        for name, value in pairs:
            multi_headers.setdefault(name, []).append(value)
        headers = {name: values[-1] for name, values in multi_headers.items()}
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
            "headers": headers or None,
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


MAX_HEAD_BYTES = 64 * 1024  # request line and headers
IDLE_TIMEOUT_SECONDS = 60.0  # a kept-alive connection with no request in it
HEAD_TIMEOUT_SECONDS = 10.0  # a request's line and headers, all of them, from its first byte
MIN_BODY_BYTES_PER_SECOND = 16 * 1024  # a body may come no slower, once past the read timeout
MAX_CONNECTIONS_PER_CLIENT = 256  # open connections from one client address
CONTROL_CHARACTER = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # in a header value; a tab is allowed


class GatewayServer(socketserver.ThreadingTCPServer):
    """A thread per connection, at most `max_per_client` open from one client address: past
    that a new connection is answered 429 at once and closed, so that one client holding
    connections open cannot take every thread from the others."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = LISTEN_BACKLOG  # a burst of connections waits to be accepted, not reset
    server_address: tuple[str, int]  # an IPv4 server's (host, port)

    def __init__(self, address: tuple[str, int], handler: type[socketserver.BaseRequestHandler], max_per_client: int):
        self.max_per_client = max_per_client
        self._open: Counter[str] = Counter()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def open_connections(self, client: str) -> int:
        with self._open_lock:
            return self._open[client]

    def process_request(self, request: Any, client_address: Any) -> None:
        client = str(client_address[0])
        with self._open_lock:
            refused = self._open[client] >= self.max_per_client
            if not refused:
                self._open[client] += 1
        if not refused:
            super().process_request(request, client_address)
            return
        detail = f"this address has {self.max_per_client} connections open, the most one client may; reuse them"
        response = _problem(HTTPStatus.TOO_MANY_REQUESTS, detail)
        head = [f"HTTP/1.1 429 {HTTPStatus.TOO_MANY_REQUESTS.phrase}", "Retry-After: 1", "Connection: close"]
        head += [f"{name}: {value}" for name, value in response.headers.items()]
        head.append(f"Content-Length: {len(response.body)}")
        try:
            request.setblocking(False)  # never wait on a client that does not read
            request.send(("\r\n".join(head) + "\r\n\r\n").encode() + response.body)
        except OSError:
            pass
        self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                client = str(client_address[0])
                self._open[client] -= 1
                if self._open[client] <= 0:
                    del self._open[client]


class Refused(Exception):
    """A request the HTTP layer answers itself, and then closes the connection."""

    def __init__(self, status: HTTPStatus, detail: str, response: GatewayResponse | None = None) -> None:
        super().__init__(detail)
        self.response = response or _problem(status, detail)


def make_server(
    gateway: Gateway,
    host: str,
    port: int,
    log: bool = True,
    read_timeout: float = READ_TIMEOUT_SECONDS,
    max_per_client: int = MAX_CONNECTIONS_PER_CLIENT,
) -> GatewayServer:
    """HTTP/1.1 in front of the gateway, parsed by h11 as strictly as RFC 9112 asks, and
    stricter where a proxy in front could read a request otherwise: a bare LF, a folded
    header line, a control character in a header value, a version other than 1.0 and 1.1
    are refused (400 or 505) and the connection closed.

    A slow sender is cut off (408): a request's line and headers must all arrive within
    HEAD_TIMEOUT_SECONDS (or the read timeout, if shorter) of its first byte, however they
    trickle in, and its body no slower than MIN_BODY_BYTES_PER_SECOND once the read timeout
    has passed; a connection that sends nothing is dropped as soon."""

    too_large = gateway.gateway_response("REQUEST_TOO_LARGE", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
    head_timeout = min(HEAD_TIMEOUT_SECONDS, read_timeout)

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            pending = b""
            deadline: float | None = time.monotonic() + head_timeout  # a new connection sends its request at once
            while True:
                connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
                try:
                    pending = self._head(pending, deadline)
                    deadline = None  # a kept-alive connection may idle before its next request
                    if not pending:
                        return  # the client closed between requests
                    connection.receive_data(pending)
                    request = self._next(connection)
                    started = time.perf_counter()
                    response = self._answer(connection, request)
                except Refused as refusal:
                    self._refuse(connection, refusal)
                    return
                except h11.RemoteProtocolError as error:
                    status = HTTPStatus(error.error_status_hint)
                    self._refuse(connection, Refused(status, f"the request is not valid HTTP/1.1: {error}"))
                    return
                except (TimeoutError, OSError):
                    return
                keep = self._send(connection, request, response)
                if log:
                    elapsed = (time.perf_counter() - started) * 1000
                    method, target = request.method.decode(), request.target.decode("latin-1")
                    print(f"{self.client_address[0]} {method} {target} {response.status} {elapsed:.0f}ms", flush=True)
                if not keep:
                    return
                pending = connection.trailing_data[0]

        def _head(self, pending: bytes, deadline: float | None) -> bytes:
            """Read until the request's head is complete, by `deadline` (else within the head
            timeout of its first byte); refuse a bare LF or a folded line in it."""
            while True:
                end = pending.find(b"\r\n\r\n")
                head = pending if end < 0 else pending[: end + 2]
                stripped = head.lstrip(b"\r\n")  # empty lines before a request line are allowed
                if re.search(rb"(?<!\r)\n", stripped):
                    raise Refused(HTTPStatus.BAD_REQUEST, "a line of the request ends in a bare LF, not CRLF")
                if re.search(rb"\r\n[ \t]", stripped):
                    raise Refused(HTTPStatus.BAD_REQUEST, "a header line is folded (obs-fold); send it on one line")
                if len(head) > MAX_HEAD_BYTES:
                    raise Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "the request's headers are too large")
                if end >= 0:
                    return pending
                # a kept-alive connection may idle between requests as long as API Gateway
                # lets it; once a request begins, all its head must come within the head timeout
                now = time.monotonic()
                if deadline is None and pending:
                    deadline = now + head_timeout
                late = f"the request's line and headers did not all arrive within {head_timeout:g} s"
                if deadline is not None and now >= deadline:
                    if not pending:
                        raise TimeoutError
                    raise Refused(HTTPStatus.REQUEST_TIMEOUT, late)
                self.request.settimeout(IDLE_TIMEOUT_SECONDS if deadline is None else deadline - now)
                try:
                    chunk = self.request.recv(65536)
                except TimeoutError:
                    if not pending:
                        raise
                    raise Refused(HTTPStatus.REQUEST_TIMEOUT, late) from None
                if not chunk:
                    if pending.strip():
                        raise Refused(HTTPStatus.BAD_REQUEST, "the connection closed inside the request's headers")
                    return b""
                pending += chunk

        def _next(self, connection: h11.Connection) -> h11.Request:
            event = connection.next_event()
            if not isinstance(event, h11.Request):  # the head is complete, so h11 has a request or an error
                raise Refused(HTTPStatus.BAD_REQUEST, "no request line")
            if event.http_version not in (b"1.0", b"1.1"):
                raise Refused(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.0 and HTTP/1.1 are served")
            return event

        def _answer(self, connection: h11.Connection, request: h11.Request) -> GatewayResponse:
            """API Gateway's checks on the request itself come first, from the headers alone."""
            self.request.settimeout(read_timeout)
            headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers]
            for name, value in headers:
                if CONTROL_CHARACTER.search(value):
                    raise Refused(HTTPStatus.BAD_REQUEST, f"the {name} header holds a control character")
            lengths = [value for name, value in headers if name.lower() == "content-length"]
            if lengths and any(name.lower() == "transfer-encoding" for name, _ in headers):
                raise Refused(HTTPStatus.BAD_REQUEST, "a request has a Content-Length or a Transfer-Encoding, not both")
            if lengths and int(lengths[0]) > MAX_BODY_BYTES:
                raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "", too_large)
            if connection.they_are_waiting_for_100_continue:
                self.request.sendall(connection.send(h11.InformationalResponse(status_code=100, headers=[])))
            body = bytearray()
            began, received = time.monotonic(), 0
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    # the body may pause up to the read timeout, and must keep the floor rate past it
                    floor = began + read_timeout + received / MIN_BODY_BYTES_PER_SECOND - time.monotonic()
                    slow = f"the request body comes slower than {MIN_BODY_BYTES_PER_SECOND // 1024} KiB/s"
                    if floor <= 0:
                        raise Refused(HTTPStatus.REQUEST_TIMEOUT, slow)
                    self.request.settimeout(min(read_timeout, floor))
                    try:
                        chunk = self.request.recv(65536)
                    except TimeoutError:
                        detail = "the request body did not arrive in time" if floor > read_timeout else slow
                        raise Refused(HTTPStatus.REQUEST_TIMEOUT, detail) from None
                    if not chunk:
                        raise Refused(HTTPStatus.BAD_REQUEST, "the connection closed inside the request body")
                    received += len(chunk)
                    connection.receive_data(chunk)
                elif isinstance(event, h11.Data):
                    body += event.data
                    if len(body) > MAX_BODY_BYTES:  # a chunked body, counted as it comes
                        raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "", too_large)
                elif isinstance(event, h11.EndOfMessage):
                    break
            try:
                return gateway.handle(
                    request.method.decode("ascii"),
                    request.target.decode("latin-1"),
                    headers,
                    bytes(body),
                    self.client_address[0],
                )
            except Exception as error:  # a fault of the gateway itself still answers, and says so
                print(f"the local gateway failed: {type(error).__name__}: {error}", flush=True)
                return _problem(HTTPStatus.INTERNAL_SERVER_ERROR, "the local gateway failed; see its log")

        def _send(self, connection: h11.Connection, request: h11.Request, response: GatewayResponse) -> bool:
            """Send the answer; whether the connection goes on."""
            headers = [
                (name, value)
                for name, value in response.headers.items()
                if name.lower() not in ("content-length", "connection", "transfer-encoding")
            ]
            headers.append(("Content-Length", str(len(response.body))))
            try:
                self.request.sendall(
                    connection.send(
                        h11.Response(status_code=response.status, headers=headers, reason=_reason(response))
                    )
                )
                if request.method != b"HEAD" and response.body:
                    self.request.sendall(connection.send(h11.Data(data=response.body)))
                self.request.sendall(connection.send(h11.EndOfMessage()))
            except OSError:
                return False  # the client went away
            return connection.our_state is h11.DONE and connection.their_state is h11.DONE

        def _refuse(self, connection: h11.Connection, refusal: Refused) -> None:
            """Answer a request the HTTP layer cannot take (problem+json), and close."""
            response = refusal.response
            headers = [*response.headers.items(), ("Content-Length", str(len(response.body))), ("Connection", "close")]
            try:
                if connection.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    head = connection.send(
                        h11.Response(status_code=response.status, headers=headers, reason=_reason(response))
                    )
                    self.request.sendall(head + response.body)
                else:  # h11 will not frame it: write it by hand
                    lines = [
                        f"HTTP/1.1 {response.status} {_reason(response).decode()}",
                        *(f"{k}: {v}" for k, v in headers),
                    ]
                    self.request.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + response.body)
            except (OSError, h11.LocalProtocolError):
                pass

    return GatewayServer((host, port), Handler, max_per_client)


def _reason(response: GatewayResponse) -> bytes:
    try:
        return HTTPStatus(response.status).phrase.encode()
    except ValueError:
        return b""
