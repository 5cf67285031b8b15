"""A webhook receiver for tests: an HTTP server on this machine that records every POST,
answers as the test tells it, verifies signatures with the reference Standard Webhooks
library, and can be down (nothing listening on its port) and come back."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks import Webhook


@dataclass
class Received:
    webhook_id: str
    headers: dict[str, str]
    body: bytes
    answered: int | None  # the status sent back; None when the receiver hung past the sender's patience
    at: float

    @property
    def payload(self) -> Any:
        return json.loads(self.body)


# Decides the answer to one request: (status, seconds to wait before answering).
Behaviour = Callable[["Received", int], tuple[int, float]]


def always(status: int) -> Behaviour:
    return lambda received, seen: (status, 0.0)


def fail_first(times: int, status: int = 500) -> Behaviour:
    """Answer `status` to the first `times` requests of each webhook id, then 204."""
    return lambda received, seen: (status, 0.0) if seen < times else (204, 0.0)


def hang_first(seconds: float) -> Behaviour:
    """Hold the first request of each webhook id for `seconds`, then answer 200 to every one."""
    return lambda received, seen: (200, seconds) if seen == 0 else (200, 0.0)


def _peer_gone(connection: socket.socket) -> bool:
    readable, _, _ = select.select([connection], [], [], 0)
    try:
        return bool(readable) and connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class Receiver:
    def __init__(self, secret: str, behaviour: Behaviour | None = None) -> None:
        self.verifier = Webhook(secret)
        self.behaviour = behaviour or always(204)
        self.location: str | None = None  # sent with a 3xx answer
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.port = 0
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/taskrun"

    def start(self) -> None:
        """Listen (again, on the same port once it had one)."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                record = Received(headers.get("webhook-id", ""), headers, body, None, time.time())
                with receiver._lock:
                    seen = sum(1 for r in receiver.received if r.webhook_id == record.webhook_id)
                    receiver.received.append(record)
                status, delay = receiver.behaviour(record, seen)
                if delay:
                    time.sleep(delay)
                    if _peer_gone(self.connection):
                        return  # the sender gave up waiting: this one was not accepted
                try:
                    self.send_response(status)
                    if 300 <= status < 400 and receiver.location:
                        self.send_header("Location", receiver.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    record.answered = status
                except OSError:
                    pass  # the sender gave up first

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True).start()

    def stop(self) -> None:
        """Nothing listens on the port until start()."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def accepted(self, webhook_id: str) -> list[Received]:
        """The requests of one webhook id this receiver answered 2xx (after the sender got it)."""
        return [r for r in self.received if r.webhook_id == webhook_id and r.answered and 200 <= r.answered < 300]

    def accepted_runs(self) -> dict[str, int]:
        """Run id → how many of its requests were answered 2xx."""
        counts: dict[str, int] = {}
        for received in list(self.received):
            if received.answered and 200 <= received.answered < 300:
                run_id = received.payload["data"]["run_id"]
                counts[run_id] = counts.get(run_id, 0) + 1
        return counts

    def of_run(self, run_id: str) -> list[Received]:
        return [r for r in list(self.received) if r.payload["data"]["run_id"] == run_id]

    def verify(self, received: Received) -> dict[str, Any]:
        """The payload, if the signature holds (the reference library raises otherwise)."""
        payload: dict[str, Any] = self.verifier.verify(received.body, received.headers)
        return payload

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"the receiver did not see it within {timeout} s: {len(self.received)} requests")
            time.sleep(0.05)
