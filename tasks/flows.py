"""Example flows (Step Functions state machines in statemachines/) and the scripts their steps run."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from taskrun import flow, task


class StockBusy(RuntimeError):
    """The stock service is busy: the order flow retries."""


class OutOfStock(RuntimeError):
    """Not enough stock: the order flow catches it and rejects the order."""


STOCK = 100


@task("examples/order/reserve", timeout=10)
def reserve(order_id: str, quantity: int, attempt: int = 0) -> dict[str, str]:
    """Reserve stock for an order. The first attempt always finds the stock service busy."""
    if quantity > STOCK:
        raise OutOfStock(f"only {STOCK} in stock, {quantity} asked for")
    if attempt == 0:
        raise StockBusy("the stock service is busy; try again")
    return {"reservation": f"rsv-{order_id}"}


@task("examples/order/price", timeout=10)
def price(quantity: int, express: bool = False) -> dict[str, float]:
    """Price an order: 2.50 an item, 10.00 more for express shipping."""
    return {"total": round(quantity * 2.5 + (10.0 if express else 0.0), 2)}


@task("examples/order/ship", timeout=10)
def ship(order_id: str, method: str) -> dict[str, str]:
    """Ship an order."""
    return {"tracking": f"{method[:3].upper()}-{order_id}", "method": method}


class OrderArgs(BaseModel):
    """Reserve, price and ship an order (Choice, Retry and Catch)."""

    order_id: Annotated[str, Field(min_length=1, max_length=64)]
    quantity: Annotated[int, Field(ge=1)]
    express: bool = False


class OrderResult(BaseModel):
    order_id: str
    status: str
    total: float | None = None
    method: str | None = None
    tracking: str | None = None
    reason: str | None = None


flow("examples/order", definition="../statemachines/order.asl.json", parameters=OrderArgs, output=OrderResult)


@task("examples/math/square", timeout=10)
def square(n: int) -> int:
    """Square a number."""
    return n * n


@task("examples/math/sum", timeout=10)
def add_up(numbers: list[int]) -> int:
    """Add numbers up."""
    return sum(numbers)


class BatchArgs(BaseModel):
    """Square every number in parallel (a Map), then add the squares up."""

    numbers: Annotated[list[int], Field(min_length=1, max_length=1000)]


class BatchResult(BaseModel):
    total: int


flow("examples/batch", definition="../statemachines/batch.asl.json", parameters=BatchArgs, output=BatchResult)


class ApprovalArgs(BaseModel):
    """Wait for a person to approve a spend: complete the run's callback with
    `{"output": {"approved": true, "by": "..."}}` (or `{"error": "Rejected"}`)."""

    requester: str
    amount: Annotated[float, Field(gt=0)]


class ApprovalResult(BaseModel):
    requester: str
    amount: float
    approved: bool
    by: str | None = None


flow(
    "examples/approval",
    definition="../statemachines/approval.asl.json",
    parameters=ApprovalArgs,
    output=ApprovalResult,
)


class DelayArgs(BaseModel):
    """Wait `seconds` (a Wait state), then greet `name`."""

    seconds: Annotated[int, Field(ge=0, le=31_536_000)]
    name: str


flow("examples/delay", definition="../statemachines/delay.asl.json", parameters=DelayArgs, output=dict[str, str])
