"""A synchronous invocation waits at most THROTTLE_WAIT_SECONDS for a sandbox, in all:
past a function's limit it is refused (429) by its deadline, however many others wait
beside it, and a request that invokes two functions one after the other (the gateway's
authorizer, then its integration) gives both one deadline, so its waits do not add up.

These run a Lambda runtime of their own, with one function whose one sandbox a test holds
busy: its handler blocks reading a FIFO until the test writes to it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from taskrun.local.gateway import Gateway
from taskrun.local.lambdas import THROTTLE_WAIT_SECONDS, LambdaRuntime, sandbox_deadline
from taskrun.local.resources import FunctionSpec
from taskrun.local.sandbox import InvokeRefused
from taskrun.local.stack import LocalStack
from tests.waiting import until

HANDLER = """
def handler(event, context):
    if event.get("hold"):
        with open(event["hold"]) as fifo:  # until the test writes to it
            fifo.read()
    return {"ok": True}
"""
CALLERS = 120
# what a refusal may take past its deadline: the lock, the threads and a busy machine's scheduling
MARGIN_SECONDS = 1.5


class Held:
    """A runtime whose functions may each have one sandbox, and a way to hold one busy."""

    def __init__(self, directory: Path, names: tuple[str, ...] = ("Front", "Back"), handler: str = HANDLER) -> None:
        (directory / "app.py").write_text(handler)
        specs = [FunctionSpec(name, directory, "app.handler", timeout=60) for name in names]
        self.runtime = LambdaRuntime(specs, "us-east-1", concurrency=1)
        self.runtime.echo_logs = False
        self._directory = directory
        self._holders: list[tuple[threading.Thread, Path]] = []

    def hold(self, name: str) -> None:
        """Its one sandbox taken by an invocation that goes on until released."""
        pool = self.runtime.pool(name)
        self.runtime.invoke(name, {})  # warm: the sandbox that will be held
        fifo = self._directory / f"{name}.fifo"
        os.mkfifo(fifo)
        holder = threading.Thread(target=self.runtime.invoke, args=(name, {"hold": str(fifo)}), daemon=True)
        holder.start()
        self._holders.append((holder, fifo))
        until(lambda: not pool._idle, 10, "the holding invocation never took the sandbox", every=0.01)

    def release_one(self, name: str) -> None:
        for holder, fifo in list(self._holders):
            if fifo.name == f"{name}.fifo":
                with open(fifo, "w") as end:
                    end.write("go")
                holder.join(timeout=10)
                self._holders.remove((holder, fifo))

    def release(self) -> None:
        for holder, fifo in self._holders:
            with open(fifo, "w") as end:
                end.write("go")
            holder.join(timeout=10)
        self._holders.clear()


@pytest.fixture
def held(tmp_path: Path) -> Iterator[Held]:
    found = Held(tmp_path)
    yield found
    found.release()
    found.runtime.stop()


def refused_after(call: object) -> float:
    """How long the call took to be refused (it must be)."""
    began = time.monotonic()
    with pytest.raises(InvokeRefused) as refusal:
        call()  # type: ignore[operator]
    assert refusal.value.throttled
    return time.monotonic() - began


def test_many_invocations_past_a_busy_sandbox_are_each_refused_by_the_wait_limit(held: Held) -> None:
    # Given a function whose one sandbox is busy
    held.hold("Back")
    # When many synchronous invocations of it come at once
    with ThreadPoolExecutor(CALLERS) as callers:
        waits = list(callers.map(lambda _: refused_after(lambda: held.runtime.invoke("Back", {})), range(CALLERS)))
    # Then each is refused, after waiting for a sandbox no longer than the limit
    assert max(waits) <= THROTTLE_WAIT_SECONDS + MARGIN_SECONDS, max(waits)
    assert min(waits) >= THROTTLE_WAIT_SECONDS - 0.1


def test_two_invocations_of_one_request_share_one_wait(held: Held) -> None:
    # Given two functions, each with its one sandbox busy (an authorizer and its integration)
    held.hold("Front")
    held.hold("Back")

    def request() -> float:
        """The gateway's way: one deadline for the request, the authorizer then the integration."""
        began = time.monotonic()
        wait_until = sandbox_deadline()
        for name in ("Front", "Back"):
            try:
                held.runtime.invoke(name, {}, wait_until=wait_until)
            except InvokeRefused as refusal:
                assert refusal.throttled
        return time.monotonic() - began

    # When many requests come at once
    with ThreadPoolExecutor(CALLERS) as callers:
        took = list(callers.map(lambda _: request(), range(CALLERS)))
    # Then each has its answers within one wait, not one wait per function
    assert max(took) <= THROTTLE_WAIT_SECONDS + MARGIN_SECONDS, max(took)


GATEWAY_HANDLER = """
def handler(event, context):
    if event.get("hold"):
        with open(event["hold"]) as fifo:  # until the test writes to it
            fifo.read()
        return {}
    if event.get("type") == "REQUEST":  # the authorizer: every route, the stack's shared usage-plan key
        statement = {"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": ["*"]}
        policy = {"Version": "2012-10-17", "Statement": [statement]}
        return {"principalId": "held", "policyDocument": policy, "context": {}, "usageIdentifierKey": USAGE_KEY}
    return {"statusCode": 200, "body": "{}"}
"""


def test_a_request_past_busy_authorizer_and_integration_sandboxes_is_answered_429_within_one_wait(
    stack: LocalStack, tmp_path: Path
) -> None:
    # Given the gateway in front of an authorizer and a function that may each have one
    # sandbox, both busy
    usage_key = stack.emulator.runtime.pool("AuthorizerFunction").image.environment["TASKRUN_SHARED_USAGE_KEY"]
    route = next(route for route in stack.gateway.routes if (route.method, route.path) == ("GET", "/v1/runs"))
    assert stack.gateway.authorizer is not None
    held = Held(
        tmp_path, (stack.gateway.authorizer, route.function), GATEWAY_HANDLER.replace("USAGE_KEY", repr(usage_key))
    )
    try:
        gateway = Gateway(stack.gateway.stack, held.runtime)
        held.hold(stack.gateway.authorizer)
        held.hold(route.function)
        # When a request comes, and the authorizer's sandbox is freed just before its wait ends
        freed = threading.Timer(THROTTLE_WAIT_SECONDS - 1, held.release_one, args=(stack.gateway.authorizer,))
        began = time.monotonic()
        freed.start()
        answer = gateway.handle("GET", "/v1/runs", {"X-API-KEY": "any"}, b"")
        took = time.monotonic() - began
    finally:
        held.release()
        held.runtime.stop()
    # Then it is answered 429 when the request's one wait is over, not a wait per function
    assert answer.status == 429, answer.body
    assert took <= THROTTLE_WAIT_SECONDS + MARGIN_SECONDS, took
