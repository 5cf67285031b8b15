"""The local gateway against clients that break HTTP: it answers with API Gateway's limits
and problem+json, from the headers alone where it can, and never hangs on a client."""

from __future__ import annotations

import json
import re
import select
import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest

from taskrun.local.server import make_server
from taskrun.local.stack import LocalStack
from tests.conftest import API_KEY, READ_TIMEOUT_SECONDS
from tests.waiting import until


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
    # Given 400 clients that connect at the same instant, each then asking for health (from
    # two addresses: one address may hold at most MAX_CONNECTIONS_PER_CLIENT open)
    url = urlsplit(base_url)
    together = threading.Barrier(400)
    answers: list[bytes] = []
    lock = threading.Lock()

    def ask(source: str) -> None:
        together.wait()
        with socket.create_connection((url.hostname, url.port), timeout=60, source_address=(source, 0)) as connection:
            connection.sendall(b"GET /v1/health HTTP/1.1\r\nHost: local\r\nConnection: close\r\n\r\n")
            received = b""
            while chunk := connection.recv(65536):
                received += chunk
        with lock:
            answers.append(received)

    threads = [threading.Thread(target=ask, args=(f"127.0.0.{1 + at % 2}",)) for at in range(400)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    # Then every one of them is answered
    first_lines = sorted({answer.split(b"\r\n", 1)[0] for answer in answers})
    assert len(answers) == 400 and first_lines == [b"HTTP/1.1 200 OK"], [a for a in answers if b" 200 " not in a][:2]


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


def trickled(base_url: str, head: bytes, trickle: bytes, every: float, give_up: float) -> tuple[bytes, float]:
    """Send `head`, then `trickle` a byte every `every` seconds until the gateway answers;
    the answer and how long after the first byte it came (`give_up` bounds the wait)."""
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=give_up) as connection:
        began = time.monotonic()
        connection.sendall(head)
        for byte in trickle:
            readable, _, _ = select.select([connection], [], [], every)  # an answer, or the next byte's turn
            if readable or time.monotonic() - began > give_up:
                break
            try:
                connection.sendall(bytes([byte]))
            except OSError:
                break  # cut off: its answer is waiting
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        return received, time.monotonic() - began


def test_headers_that_trickle_in_are_cut_off_at_a_total_deadline(base_url: str) -> None:
    # Given a client that sends its request line, then a header a byte at a time, each byte
    # well within the read timeout of the one before
    received, took = trickled(
        base_url, b"GET /v1/health HTTP/1.1\r\nHost: local\r\nX-Slow: ", b"a" * 1000, 0.2, READ_TIMEOUT_SECONDS * 5
    )
    # Then the gateway answers 408 once the head's deadline has passed, however the bytes came
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), received
    assert "did not all arrive" in json.loads(body)["detail"]
    assert took < READ_TIMEOUT_SECONDS * 3


def test_a_body_that_trickles_in_below_the_floor_rate_is_cut_off(base_url: str) -> None:
    # Given a client that announces a 100 KB body and sends it 20 bytes a second
    head = request(
        "POST", "/v1/runs", {"Content-Length": "100000", "X-API-KEY": API_KEY, "Content-Type": "application/json"}
    )
    received, took = trickled(base_url, head, b" " * 100_000, 0.05, READ_TIMEOUT_SECONDS * 10)
    # Then the gateway answers 408, saying the body comes too slowly, soon after the read timeout
    status_line, _, body = received.partition(b"\r\n\r\n")
    assert status_line.startswith(b"HTTP/1.1 408 "), received
    assert "slower than 16 KiB/s" in json.loads(body)["detail"]
    assert took < READ_TIMEOUT_SECONDS * 3


def test_one_client_address_holds_at_most_its_connections_and_others_are_served(stack: LocalStack) -> None:
    # Given the gateway served with at most 8 connections a client address
    server = make_server(stack.gateway, "127.0.0.1", 0, log=False, read_timeout=READ_TIMEOUT_SECONDS, max_per_client=8)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    held = []
    try:
        # and a client at 127.0.0.3 that holds 8 open
        held = [socket.create_connection(("127.0.0.1", port), source_address=("127.0.0.3", 0)) for _ in range(8)]
        for connection in held:
            connection.sendall(b"GET /v1/health HTTP/1.1\r\nHost: local\r\n")  # a head still coming
        until(lambda: server.open_connections("127.0.0.3") >= 8, 5, "the 8 connections were not taken", every=0.01)
        # When it opens a ninth, it is answered 429 at once and closed
        with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.3", 0)) as ninth:
            received = b""
            while chunk := ninth.recv(65536):
                received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 429 ") and b"Retry-After: 1" in head, received
        assert "8 connections open" in json.loads(body)["detail"]
        # But another address is served meanwhile
        assert httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=10).status_code == 200
    finally:
        for connection in held:
            connection.close()
        server.shutdown()
        server.server_close()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def test_valid_clients_keep_their_latency_during_a_trickle_of_400_connections(base_url: str) -> None:
    url = urlsplit(base_url)
    assert url.hostname and url.port

    def health(client: httpx.Client) -> float:
        began = time.monotonic()
        assert client.get("/v1/health").status_code == 200
        return time.monotonic() - began

    # Given the latency of a valid client on its own (its function's sandbox warm)
    with httpx.Client(base_url=base_url, timeout=30) as client:
        health(client)
        before = [health(client) for _ in range(40)]
        # When 400 connections from ten other addresses trickle their heads a byte at a time,
        # each cut off at the head's deadline connecting again
        stop, connected = threading.Event(), threading.Event()
        cut: list[bytes] = []

        def trickle() -> None:
            def connect(at: int) -> socket.socket:
                source = (f"127.0.0.{10 + at % 10}", 0)
                connection = socket.create_connection((url.hostname, url.port), source_address=source)
                connection.sendall(b"GET /v1/health HTTP/1.1\r\nHost: local\r\nX-Slow: ")
                connection.setblocking(False)
                return connection

            slow = [connect(at) for at in range(400)]
            connected.set()
            while not stop.wait(0.25):
                for at, connection in enumerate(slow):
                    try:
                        answer: bytes | None = connection.recv(200)  # the gateway's answer, or its close
                    except BlockingIOError:
                        answer = None  # nothing yet: still trickling
                    except OSError:
                        answer = b""
                    if answer is None:
                        try:
                            connection.send(b"a")
                            continue
                        except OSError:
                            answer = b""
                    cut.append(answer[:12])
                    connection.close()
                    slow[at] = connect(at)
            for connection in slow:
                connection.close()

        trickler = threading.Thread(target=trickle)
        trickler.start()
        try:
            assert connected.wait(30), "the 400 connections were not made"
            # measured until each trickling connection has been cut off once (at most 30 s)
            during: list[float] = []
            deadline = time.monotonic() + 30
            while (len(cut) < 400 or len(during) < 40) and time.monotonic() < deadline:
                during.append(health(client))
        finally:
            stop.set()
            trickler.join(30)
    # Then every request of the valid client is answered, its slowest within a bound, and
    # each trickling connection was cut off with a 408
    before_ms = [percentile(before, fraction) * 1000 for fraction in (0.5, 0.99)]
    during_ms = [percentile(during, fraction) * 1000 for fraction in (0.5, 0.99)]
    print(
        f"health latency, ms: before p50 {before_ms[0]:.1f} p99 {before_ms[1]:.1f} (n=40);"
        f" during a 400-connection trickle p50 {during_ms[0]:.1f} p99 {during_ms[1]:.1f} (n={len(during)});"
        f" trickling connections cut off: {len(cut)}"
    )
    assert len(cut) >= 400
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in cut if answer), set(cut)
    assert percentile(during, 0.99) < 2.0


@pytest.mark.parametrize(
    "headers",
    [
        [("X-API-KEY", API_KEY), ("X-API-KEY", API_KEY)],
        [("X-API-KEY", "trk_not_this_one"), ("X-API-KEY", API_KEY)],
        [("Authorization", f"Bearer {API_KEY}"), ("Authorization", "Bearer other")],
        [("X-API-KEY", API_KEY), ("Authorization", "Bearer another-key")],
        [("X-API-KEY", "another-key"), ("Authorization", f"Bearer {API_KEY}")],
    ],
    ids=["two-x-api-key", "wrong-then-right", "two-authorization", "key-and-other-bearer", "other-key-and-bearer"],
)
def test_a_request_with_two_credentials_is_refused_400_never_the_last_one_wins(
    anonymous: httpx.Client, headers: list[tuple[str, str]]
) -> None:
    for method, path, body in [
        ("GET", "/v1/runs", None),
        ("POST", "/v1/runs", {"task_id": "examples/greet", "arguments": {"name": "x"}}),
        ("GET", "/v1/keys", None),
        ("POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    ]:
        answer = anonymous.request(method, path, headers=headers, json=body)
        assert answer.status_code == 400, (method, path, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert "send one key" in answer.json()["detail"]


def test_two_wrong_keys_are_refused_as_any_wrong_key(anonymous: httpx.Client) -> None:
    answer = anonymous.get("/v1/runs", headers=[("X-API-KEY", "wrong-1"), ("X-API-KEY", "wrong-2")])
    assert answer.status_code == 401


def test_one_key_in_both_headers_is_one_credential(anonymous: httpx.Client) -> None:
    headers = [("X-API-KEY", API_KEY), ("Authorization", f"Bearer {API_KEY}")]
    assert anonymous.get("/v1/runs?limit=1", headers=headers).status_code == 200


def test_two_content_types_are_refused(base_url: str) -> None:
    raw = (
        b"POST /v1/runs HTTP/1.1\r\nHost: local\r\nX-API-KEY: " + API_KEY.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Type: text/plain\r\nContent-Length: "
        + str(len(RUN_BODY)).encode()
        + b"\r\n\r\n"
        + RUN_BODY
    )
    status, headers, body = exchange(base_url, raw)
    assert status == 400
    assert "2 Content-Type headers" in problem_of(status, headers, body)["detail"]


@pytest.mark.parametrize("character", [b"\x01", b"\x1b", b"\x7f", b"\x0b"], ids=["soh", "esc", "del", "vt"])
def test_a_header_value_with_a_control_character_is_refused(base_url: str, character: bytes) -> None:
    raw = b"GET /v1/health HTTP/1.1\r\nHost: local\r\nX-Note: a" + character + b"b\r\n\r\n"
    status, headers, body = exchange(base_url, raw)
    assert status == 400
    assert "X-Note" in problem_of(status, headers, body)["detail"] or "x-note" in json.loads(body)["detail"]


def test_a_tab_in_a_header_value_is_allowed(base_url: str) -> None:
    status, _, _ = exchange(
        base_url, b"GET /v1/health HTTP/1.1\r\nHost: local\r\nX-Note: a\tb\r\nConnection: close\r\n\r\n"
    )
    assert status == 200


def test_a_path_with_an_encoded_newline_is_judged_as_any_path(api: httpx.Client) -> None:
    # An unknown run whose id holds a newline is not found, not refused for want of a scope
    for path in ("/v1/runs/run_x%0Ay", "/v1/runs/run_x%0D%0Ay", "/v1/runs/run_x%0A/history"):
        answer = api.get(path)
        assert answer.status_code == 404, (path, answer.text)
