"""Domain errors. The API maps each to an HTTP problem in one place (taskrun.api)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FieldError:
    """One invalid input, located like `body.arguments.count`."""

    location: str
    message: str
    value: Any = None


class TaskrunError(Exception):
    """Base of every error the core raises on purpose."""

    title = "Error"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class TaskNotFound(TaskrunError):
    title = "Task not found"

    def __init__(self, task_id: str, hint: str = "") -> None:
        super().__init__(f"no task named {task_id!r}" + (f"; {hint}" if hint else ""))
        self.task_id = task_id


class ScheduleNotFound(TaskrunError):
    title = "Schedule not found"

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"no schedule {schedule_id[:100]!r}")


class RunNotFound(TaskrunError):
    title = "Run not found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r}")
        self.run_id = run_id


@dataclass
class InvalidInput(TaskrunError):
    """Input that parsed but breaks a rule: bad arguments, an unknown revision, a wrong task type."""

    detail: str
    errors: list[FieldError] = field(default_factory=list)
    title = "Invalid input"

    def __post_init__(self) -> None:
        super().__init__(self.detail)

    def summary(self) -> str:
        """One line naming every invalid input."""
        return describe_errors(self.detail, self.errors)


def describe_errors(detail: str, errors: list[FieldError]) -> str:
    if not errors:
        return detail
    return detail + ": " + "; ".join(f"{error.location}: {error.message}" for error in errors)


class RunConflict(TaskrunError):
    """A status move the run's current state does not allow (for example cancelling an ended run)."""

    title = "Run conflict"

    def __init__(self, run_id: str, status: str, detail: str | None = None) -> None:
        super().__init__(detail or f"run {run_id} is {status}")
        self.run_id = run_id
        self.status = status


class PayloadTooLarge(TaskrunError):
    title = "Content too large"


class Unauthorized(TaskrunError):
    title = "Unauthorized"


class CallbackNotFound(TaskrunError):
    title = "Callback not found"


class CallbackConflict(TaskrunError):
    title = "Callback conflict"


class DeliveryNotFound(TaskrunError):
    title = "Delivery not found"


class DeliveryConflict(TaskrunError):
    title = "Delivery conflict"


class IdempotencyConflict(TaskrunError):
    title = "Idempotency key reused"

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was used with another request body in the last 24 hours; use a new key")


class Forbidden(TaskrunError):
    title = "Forbidden"


class Unavailable(TaskrunError):
    """Something the request needs cannot be had now; the request changed nothing."""

    title = "Service Unavailable"


class KeyNotFound(TaskrunError):
    title = "Key not found"

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no key {key_id[:100]!r}")


class InvalidArguments(Exception):
    """A flow step's arguments do not match its script (the Step Functions error name)."""


class TaskTimedOut(Exception):
    """A flow step's script ran past its timeout (the Step Functions error name)."""


class SecretNotFound(Exception):
    """A secret the task declares is not set: the task is not started (the Step Functions error name)."""


class TaskCancelled(Exception):
    """A flow step's script was stopped because its run was cancelled (the Step Functions error name)."""


class ResultTooLarge(Exception):
    """A flow step's result is more than Step Functions passes between states (the error
    name a Retry or Catch can match, where States.DataLimitExceeded cannot be caught)."""


class InvalidResult(Exception):
    """A script's return value breaks its declared return type or the run's `json_schema`,
    or is nothing JSON can hold (an object, NaN, a cycle, nesting too deep). A run ends
    failed with a validation_error; in a flow it is the step's error name."""
