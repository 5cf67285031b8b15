"""Code-first flows for the tests: plain Python on Lambda durable functions."""

from __future__ import annotations

from pathlib import Path

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_step
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy

from taskrun import RunContext, flow, script_step, task

ONCE = StepConfig(retry_strategy=create_retry_strategy(RetryStrategyConfig(max_attempts=1)))


@durable_step
def mark(step: StepContext, marks: str, name: str) -> str:
    """Note in `marks` that the step `name` ran (a step that ran twice is seen twice)."""
    with Path(marks).open("a") as out:
        out.write(name + "\n")
    return name


@durable_step
def refuse(step: StepContext, why: str) -> None:
    raise ValueError(why)


@flow("durable/greet", timeout=120)
def greet(context: DurableContext, name: str, marks: str, pause: int = 0) -> dict[str, str]:
    """Greets in two steps, with a wait between them if asked."""
    first = context.step(mark(marks, "hello"), name="hello")
    if pause:
        context.wait(Duration.from_seconds(pause), name="pause")
    second = context.step(mark(marks, "goodbye"), name="goodbye")
    return {"greeting": f"{first} {name}, {second}"}


@flow("durable/refuse", timeout=120)
def refusing(context: DurableContext, why: str) -> None:
    """A step that raises, not tried again: the run fails naming it."""
    context.step(refuse(why), name="check", config=ONCE)


@flow("durable/approve", timeout=300)
def approve(context: DurableContext, marks: str) -> dict[str, object]:
    """Waits for a person's answer to a callback."""
    context.step(mark(marks, "asked"), name="ask")
    answer = context.wait_for_callback(lambda callback_id, ctx: None, name="approval")
    return {"answer": answer}


@flow("durable/unjson", timeout=60)
def unjson(context: DurableContext) -> None:
    """A step whose result JSON cannot hold."""
    context.step(lambda step: {1, 2}, name="odd")


@task("durable/count", timeout=10)
def count(n: int, context: RunContext) -> int:
    """Counts one on, saying so."""
    context.progress(1, 1, f"counted past {n}")
    return n + 1


@flow("durable/scripted", timeout=60)
def scripted(context: DurableContext, n: int) -> dict[str, int]:
    """Catalog scripts as steps."""
    once = context.step(script_step("durable/count", n=n), name="count")
    twice = context.step(script_step("durable/count", n=once), name="again", config=ONCE)
    return {"n": twice}


@flow("durable/misscripted", timeout=60)
def misscripted(context: DurableContext) -> int:
    """A script step given an argument of the wrong type."""
    return int(context.step(script_step("durable/count", n="five"), name="count", config=ONCE))


@task("durable/tokens", timeout=10, secrets=["test-step-key"])
def tokens(words: str, context: RunContext) -> int:
    """Counts words as tokens, reporting them as usage, with a key of its own."""
    print(f"counting with {context.secret('test-step-key')}")
    context.report_usage(tokens=len(words.split()))
    return len(words.split())


@durable_step
def charge(step: StepContext, run: RunContext, amount: int) -> int:
    print(f"charging {amount} with {run.secret('test-flow-key')}")
    run.report_usage(calls=1)
    return len(run.secret("test-flow-key"))


@flow("durable/metered", timeout=60, secrets=["test-flow-key"])
def metered(context: DurableContext, run: RunContext, amount: int, words: str) -> dict[str, int]:
    """A flow with a secret, usage, logs and a wait, and a script step with its own secret."""
    length = context.step(charge(run, amount), name="charge")
    context.logger.info("charged, now waiting")
    context.wait(Duration.from_seconds(1), name="settle")
    counted = context.step(script_step("durable/tokens", words=words), name="tokens", config=ONCE)
    return {"key_length": length, "tokens": counted}
