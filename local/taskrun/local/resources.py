"""What the template declares, as local mode reads it: functions and their routes, state
machines, event rules, streams, queues and schedules; the account local mode plays."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ACCOUNT_ID = "123456789012"
LOCAL_STACK_UUID = "00000000-0000-4000-8000-000000000000"  # the last part of AWS::StackId


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    function: str
    authorized: bool
    pattern: re.Pattern[str]
    api_key_required: bool = False  # the usage plan's per-key throttle applies

    @property
    def specificity(self) -> tuple[int, int]:
        """Literal paths before templated ones, greedy parameters last."""
        return (self.path.count("+}"), self.path.count("{"))


@dataclass
class FunctionSpec:
    logical_id: str
    code_uri: Path
    handler: str
    timeout: int
    memory: int = 128
    environment: dict[str, str] = field(default_factory=dict)
    on_failure: str | None = None  # the Lambda an asynchronous invocation's failure goes to
    on_failure_queue: str | None = None  # or the SQS queue (its name)
    async_retries: int = 2  # EventInvokeConfig.MaximumRetryAttempts (Lambda's default is 2)
    max_event_age: float = 21600  # EventInvokeConfig.MaximumEventAgeInSeconds (Lambda's default is 6 h)
    layers: tuple[str, ...] = ()  # the layers it adds to the Globals' (their logical ids)
    name: str | None = None  # its FunctionName, if the template sets one (locally it answers to both)
    durable_timeout: int | None = None  # DurableConfig's ExecutionTimeout: a durable function's


@dataclass
class StateMachineSpec:
    logical_id: str
    name: str
    definition: Path
    substitutions: dict[str, str]
    role: str | None = None  # the role's ARN, as the template gives it


@dataclass
class EventRule:
    """An EventBridgeRule event of a function: the events matching the pattern invoke it."""

    function: str
    pattern: dict[str, Any]


@dataclass
class StreamSource:
    """A DynamoDB stream event of a function: the table's changes invoke it in batches."""

    function: str
    table: str
    batch_size: int
    filters: list[dict[str, Any]] = field(default_factory=list)  # FilterCriteria patterns; none lets all in
    max_retries: int = 0  # MaximumRetryAttempts (AWS retries until the record expires when unset)
    on_failure_queue: str | None = None  # the SQS queue a batch goes to once the retries are spent


QUEUE_ATTRIBUTES = ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds")


@dataclass
class QueueSpec:
    name: str
    attributes: dict[str, str]  # as CreateQueue takes them


@dataclass
class QueueSource:
    """An SQS event of a function: the queue's messages invoke it in batches."""

    function: str
    queue: str  # the queue's name
    batch_size: int
    reports_failures: bool  # FunctionResponseTypes has ReportBatchItemFailures


@dataclass
class ScheduleSource:
    """A Schedule event of a function: EventBridge invokes it at a fixed rate."""

    function: str
    seconds: float
    rule: str  # the rule's logical id, as SAM names it


_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float:
    """`rate(5 minutes)` in seconds; local mode runs only the rates of the template's own schedules."""
    match = _RATE.match(expression.strip())
    if match is None:
        raise ValueError(f"local mode runs rate(...) schedules only, not {expression!r}")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")]


@dataclass
class DeclaredSchedule:
    """An AWS::Scheduler::Schedule of the template: its expression, and the target's Input."""

    name: str
    expression: str
    timezone: str
    enabled: bool
    function: str  # the target function's logical id
    input: dict[str, Any]
