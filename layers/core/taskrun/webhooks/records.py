"""A webhook delivery as it is kept and shown: its status, attempts and id (made from the
run's, so a run has one delivery whatever retries its stream batch sees)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from taskrun.modelbase import Model
from taskrun.models import UtcTime

DELIVERY_ID = re.compile(r"^msg_[0-9a-z]{26}$")


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Attempt(Model):
    number: int = Field(description="1 for the first attempt, counting every attempt of the delivery.")
    at: UtcTime = Field(description="When the request was sent.")
    trigger: Literal["automatic", "manual"] = "automatic"
    status_code: int | None = Field(default=None, description="The receiver's HTTP status, if it answered.")
    error: str | None = Field(
        default=None, description="Why there was no answer: a refusal, a timeout, a failed connection."
    )
    duration_ms: int


class Delivery(Model):
    """A run's webhook message, and every attempt to deliver it."""

    delivery_id: str = Field(description="The message's `webhook-id`, the same on every attempt.")
    run_id: str
    url: str
    event_type: str = Field(description="`run.<status>`, the `type` of the message.")
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: list[Attempt] = Field(default_factory=list)
    created_at: UtcTime
    next_attempt_at: UtcTime | None = Field(default=None, description="When a pending delivery is tried next.")
    delivered_at: UtcTime | None = None
    automatic_attempts: int = Field(default=0, exclude=True)
    manual: bool = Field(default=False, exclude=True)  # the next attempt was asked for by hand
    owner: str | None = Field(default=None, exclude=True)  # the queue message that carries it
    lease_until: datetime | None = Field(default=None, exclude=True)  # an attempt is under way until then


class DeliveryList(Model):
    deliveries: list[Delivery]


@dataclass(frozen=True)
class DeliveryRef:
    """What a queue message names."""

    run_id: str
    delivery_id: str

    def to_json(self) -> str:
        return json.dumps({"run_id": self.run_id, "delivery_id": self.delivery_id})

    @classmethod
    def from_json(cls, text: str) -> DeliveryRef:
        data = json.loads(text)
        return cls(run_id=str(data["run_id"]), delivery_id=str(data["delivery_id"]))


def delivery_id_of(run_id: str) -> str:
    """A run's one delivery: its id follows from the run's (`run_x` → `msg_x`)."""
    return "msg_" + run_id.removeprefix("run_")
