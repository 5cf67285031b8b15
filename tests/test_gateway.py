"""The local gateway against clients that break HTTP: it answers with API Gateway's limits
and problem+json, from the headers alone where it can, and never hangs on a client."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import API_KEY, READ_TIMEOUT_SECONDS


def exchange(base_url: str, raw: bytes, wait: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes on a new connection; read one response (status, headers, body)."""
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=wait) as connection:
        connection.sendall(raw)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = connection.recv(65536)
            if not chunk:
                break
            body += chunk
        return int(lines[0].split()[1]), headers, body


def problem_of(status: int, headers: dict[str, str], body: bytes) -> dict:
    assert headers["content-type"] == "application/problem+json", (status, headers, body)
    problem = json.loads(body)
    assert problem["status"] == status
    return problem


def request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: local", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_a_body_over_10_mb_is_refused_from_its_headers_before_it_is_sent(base_url: str) -> None:
    # Given a client that announces 1 GB and sends none of it, without a key
    began = time.monotonic()
    status, headers, body = exchange(base_url, request("POST", "/v1/runs", {"Content-Length": str(2**30)}))
    # Then it is refused at once with the API's 413 problem
    assert status == 413
    assert problem_of(status, headers, body)["title"] == "Content Too Large"
    assert time.monotonic() - began < READ_TIMEOUT_SECONDS


@pytest.mark.parametrize(
    "lengths",
    [["-1"], ["abc"], ["1e3"], [" "], ["5", "6"]],
    ids=["negative", "not-a-number", "exponent", "blank", "two-different"],
)
def test_a_content_length_that_is_not_one_whole_number_is_400(base_url: str, lengths: list[str]) -> None:
    head = "POST /v1/runs HTTP/1.1\r\nHost: local\r\n" + "".join(f"Content-Length: {v}\r\n" for v in lengths)
    status, headers, body = exchange(base_url, (head + "\r\n").encode())
    assert status == 400
    assert "Content-Length" in problem_of(status, headers, body)["detail"]


def test_a_chunked_body_is_read_as_its_chunks(base_url: str) -> None:
    # Given a run's JSON sent in two chunks
    chunks = [b'{"task_id": "examples/echo", ', b'"arguments": {"message": "in chunks"}, "wait": true}']
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n"
    raw = request(
        "POST",
        "/v1/runs",
        {"Transfer-Encoding": "chunked", "X-API-KEY": API_KEY, "Content-Type": "application/json"},
        body,
    )
    status, _, answer = exchange(base_url, raw)
    # Then the run is started from the whole body
    assert status == 201, answer
    assert json.loads(answer)["arguments"]["message"] == "in chunks"


def test_a_chunked_body_over_10_mb_is_413_as_it_comes(base_url: str) -> None:
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as connection:
        connection.sendall(request("POST", "/v1/runs", {"Transfer-Encoding": "chunked"}))
        chunk = b"a" * (1024 * 1024)
        try:
            for _ in range(11):
                connection.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        except OSError:
            pass  # the gateway answered and closed once past the limit
        answer = connection.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_a_client_that_stops_sending_is_answered_408_after_the_read_timeout(base_url: str) -> None:
    # Given a client that announces 100 bytes and sends 10
    began = time.monotonic()
    raw = request("POST", "/v1/runs", {"Content-Length": "100", "X-API-KEY": API_KEY}, b'{"task_id"')
    status, headers, body = exchange(base_url, raw, wait=READ_TIMEOUT_SECONDS * 5)
    # Then the gateway gives up on it after its read timeout
    assert status == 408
    problem_of(status, headers, body)
    assert time.monotonic() - began < READ_TIMEOUT_SECONDS * 3


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /v1/health HTTP/9.9\r\n\r\n", 505),
        (b"GET /v1/health HTTP/1.1\r\nX-Long: " + b"a" * 70_000 + b"\r\n\r\n", 431),
        (b"BREW /v1/runs HTTP/1.1\r\nHost: local\r\n\r\n", 405),
    ],
    ids=["bad-request-line", "bad-version", "header-too-long", "unknown-method"],
)
def test_errors_of_the_http_layer_are_problems_too(base_url: str, raw: bytes, status: int) -> None:
    answered, headers, body = exchange(base_url, raw)
    assert answered == status
    problem_of(answered, headers, body)


def test_a_burst_of_hundreds_of_connections_is_held_not_reset(base_url: str) -> None:
    # Given 400 clients that connect at the same instant, each then asking for health
    url = urlsplit(base_url)
    together = threading.Barrier(400)
    answers: list[bytes] = []
    lock = threading.Lock()

    def ask() -> None:
        together.wait()
        with socket.create_connection((url.hostname, url.port), timeout=60) as connection:
            connection.sendall(b"GET /v1/health HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n")
            received = b""
            while chunk := connection.recv(65536):
                received += chunk
        with lock:
            answers.append(received)

    threads = [threading.Thread(target=ask) for _ in range(400)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    # Then every one of them is answered
    first_lines = sorted({answer.split(b"\r\n", 1)[0] for answer in answers})
    assert len(answers) == 400 and first_lines == [b"HTTP/1.1 200 OK"], first_lines


def test_keep_alive_goes_on_after_an_error_the_gateway_could_read_past(api: httpx.Client) -> None:
    assert api.post("/v1/runs", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    assert api.get("/v1/health").status_code == 200


def exchange_all(base_url: str, raw: bytes) -> bytes:
    """Send raw bytes on a new connection; read everything until the gateway closes it."""
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as connection:
        connection.sendall(raw)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        return received


RUN_BODY = b'{"task_id": "examples/echo", "arguments": {"message": "m"}}'
SMUGGLED = b"GET /v1/health HTTP/1.1\r\nHost: local\r\n\r\n"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"POST /v1/runs HTTP/1.1\r\nHost: local\r\nContent-Length: \xc2\xb2\r\n\r\n", 400),
        (b"POST /v1/runs HTTP/1.1\r\nHost: local\r\nContent-Length: \xb2\r\n\r\n", 400),
        (b"POST /v1/runs HTTP/1.1\r\nHost: local\r\nno colon here\r\nContent-Length: 40\r\n\r\n" + SMUGGLED, 400),
        (b"POST /v1/runs HTTP/1.1\r\nHost: local\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, 400),
        (b"POST /v1/runs HTTP/1.1\r\nHost: local\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, 400),
        (b"POST /v1/runs HTTP/1.1\r\nHost: local\r\nX-Folded: a\r\n\tb\r\n\r\n", 400),
        (b"POST /v1/runs HTTP/1.1\r\nHost: local\r\nTransfer-Encoding: \r\n\r\n" + SMUGGLED, 501),
        (b"POST /v1/runs HTTP/1.1\r\nHost: local\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" + SMUGGLED, 501),
        (b"POST /v1/runs HTTP/1.1\r\nHost: local\r\nTransfer-Encoding: identity\r\n\r\n" + SMUGGLED, 501),
        (
            b"POST /v1/runs HTTP/1.1\r\nHost: local\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"0\r\n\r\n" + SMUGGLED,
            400,
        ),
        (b"GET /v1/health HTTP/1.1\nHost: local\n\n", 400),
        (b"GET /v1/health HTTP/1.1\r\nHost: local\n\r\n", 400),
        (b"GET /v1/health HTTP/1.2\r\nHost: local\r\n\r\n", 505),
        (b"GET /v1/health HTTP/2.0\r\nHost: local\r\n\r\n", 505),
        (b"GET /v1/health\r\n\r\n", 400),
        (b"GET  /v1/health HTTP/1.1\r\nHost: local\r\n\r\n", 400),
        (b"GET /v1/health HTTP/1.1\r\nHost: local\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400),
        (b"GET /v1/health HTTP/1.1\r\nHost: local\r\nContent-Length: +5\r\n\r\nhello", 400),
    ],
    ids=[
        "length-superscript-utf8",
        "length-superscript-latin1",
        "line-without-colon",
        "space-before-colon",
        "folded-transfer-encoding",
        "folded-header",
        "empty-transfer-encoding",
        "unknown-coding",
        "identity-coding",
        "length-and-chunked",
        "bare-lf",
        "one-bare-lf",
        "http-1.2",
        "http-2.0",
        "http-0.9",
        "two-spaces",
        "two-lengths",
        "signed-length",
    ],
)
def test_a_request_rfc_9112_does_not_allow_is_refused_and_the_connection_closed(
    base_url: str, raw: bytes, status: int
) -> None:
    # When a request that breaks HTTP/1.1's syntax is sent, with a second one after it
    received = exchange_all(base_url, raw)
    # Then it has one answer, the refusal, as a problem, and the connection is closed:
    # nothing after the broken request is taken as a request of its own
    assert len(re.findall(rb"(?:^|\r\n)HTTP/1\.1 \d{3} ", received)) == 1, received
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), received
    assert b"connection: close" in head.lower()
    assert json.loads(body)["status"] == status


def test_a_well_formed_request_after_another_on_one_connection_is_answered(base_url: str) -> None:
    # Two requests sent at once on one connection (pipelined) are both answered, in order
    two = SMUGGLED + b"GET /v1/health HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n"
    received = exchange_all(base_url, two)
    assert received.count(b"HTTP/1.1 200 OK\r\n") == 2, received
