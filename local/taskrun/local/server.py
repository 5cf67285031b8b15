"""The local stack's HTTP/1.1 server in front of the gateway: h11, as strict as RFC 9112 asks
and a little more, slow senders cut off, and a bound on the connections one client holds."""

from __future__ import annotations

import re
import socket
import socketserver
import threading
import time
from collections import Counter
from http import HTTPStatus
from typing import Any

import h11

from taskrun.local.gateway import (
    LISTEN_BACKLOG,
    MAX_BODY_BYTES,
    READ_TIMEOUT_SECONDS,
    Gateway,
    GatewayResponse,
    problem,
)

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
        response = problem(HTTPStatus.TOO_MANY_REQUESTS, detail)
        response.headers["Retry-After"] = "1"
        try:
            request.setblocking(False)  # never wait on a client that does not read
            request.send(closing_answer(response))
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
        self.response = response or problem(status, detail)


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
                return problem(HTTPStatus.INTERNAL_SERVER_ERROR, "the local gateway failed; see its log")

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
                else:  # h11 will not frame it
                    self.request.sendall(closing_answer(response))
            except (OSError, h11.LocalProtocolError):
                pass

    return GatewayServer((host, port), Handler, max_per_client)


def closing_answer(response: GatewayResponse) -> bytes:
    """A response framed by hand, its length given and the connection closed after it: for
    an answer h11 cannot frame (a connection refused before it has a request, or one whose
    request h11 gave up on)."""
    headers = [*response.headers.items(), ("Content-Length", str(len(response.body))), ("Connection", "close")]
    lines = [f"HTTP/1.1 {response.status} {_reason(response).decode()}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + response.body


def _reason(response: GatewayResponse) -> bytes:
    try:
        return HTTPStatus(response.status).phrase.encode()
    except ValueError:
        return b""
