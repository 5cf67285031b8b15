"""The order flow of examples/order again, as a code-first flow on Lambda durable functions:
the same steps (a reservation retried while the stock service is busy, out of stock caught,
express or standard shipping) in plain Python, with a cool-down wait and, if asked, a
person's approval first."""

from __future__ import annotations

from typing import Annotated, Any

from aws_durable_execution_sdk_python import DurableContext, StepContext, durable_step
from aws_durable_execution_sdk_python.config import Duration, StepConfig
from aws_durable_execution_sdk_python.exceptions import CallbackError, StepError
from aws_durable_execution_sdk_python.retries import RetryStrategyConfig, create_retry_strategy
from flows import STOCK, OutOfStock, StockBusy
from pydantic import Field

from taskrun import flow

# StockBusy is tried again (twice, a second apart); anything else, OutOfStock included, is not
BUSY_RETRIED = StepConfig(
    retry_strategy=create_retry_strategy(
        RetryStrategyConfig(
            max_attempts=3,
            initial_delay=Duration.from_seconds(1),
            backoff_rate=1.0,
            retryable_error_types=[StockBusy],
        )
    )
)


@durable_step
def reserve(step: StepContext, order_id: str, quantity: int) -> dict[str, str]:
    """The first attempt always finds the stock service busy, as in examples/order."""
    if quantity > STOCK:
        raise OutOfStock(f"only {STOCK} in stock, {quantity} asked for")
    if step.attempt == 1:
        raise StockBusy("the stock service is busy; try again")
    return {"reservation": f"rsv-{order_id}"}


@durable_step
def price(step: StepContext, quantity: int, express: bool) -> float:
    """2.50 an item, 10.00 more for express shipping."""
    return round(quantity * 2.5 + (10.0 if express else 0.0), 2)


@durable_step
def ship(step: StepContext, order_id: str, method: str) -> str:
    return f"{method[:3].upper()}-{order_id}"


@flow("examples/order_code", timeout=86_400)
def order(
    context: DurableContext,
    order_id: Annotated[str, Field(min_length=1, max_length=64)],
    quantity: Annotated[int, Field(ge=1)],
    express: bool = False,
    cool_down: Annotated[int, Field(ge=0, le=3600)] = 0,
    approval: bool = False,
) -> dict[str, Any]:
    """Reserve, price and ship an order, as examples/order does, written as Python:
    `cool_down` seconds of wait before shipping (no process held while it waits), and with
    `approval`, a person's answer to a callback first (POST /v1/runs/{id}/callbacks/{callback_id})."""
    if approval:
        try:
            context.wait_for_callback(lambda callback_id, ctx: None, name="approval")
        except CallbackError as refused:
            return {"order_id": order_id, "status": "rejected", "reason": f"not approved: {refused.message}"}
    try:
        context.step(reserve(order_id, quantity), name="reserve", config=BUSY_RETRIED)
    except StepError as failed:
        if failed.error_type.rsplit(".", 1)[-1] != OutOfStock.__name__:  # the exception's (qualified) name
            raise
        return {"order_id": order_id, "status": "rejected", "reason": failed.message}
    total = context.step(price(quantity, express), name="price")
    if cool_down:
        context.wait(Duration.from_seconds(cool_down), name="cool-down")
    method = "express" if express else "standard"
    tracking = context.step(ship(order_id, method), name=f"ship-{method}")
    return {"order_id": order_id, "status": "shipped", "total": total, "method": method, "tracking": tracking}
