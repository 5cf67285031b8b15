"""AWS clients, made once per process on first use (never at import: the emulator must be in place first)."""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

T = TypeVar("T")
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)


@cache
def client(service: str) -> Any:
    # S3 links are signed with Signature Version 4 (what every region takes), not the legacy default
    config = _CONFIG.merge(Config(signature_version="s3v4")) if service == "s3" else _CONFIG
    return boto3.session.Session().client(service, config=config)  # type: ignore[call-overload]


@cache
def dynamodb_table(name: str) -> Any:
    return boto3.session.Session().resource("dynamodb", config=_CONFIG).Table(name)


def is_condition_failure(error: ClientError) -> bool:
    """A conditional write that did not happen because its condition was false."""
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
    }
)


def is_throttled(error: BaseException) -> bool:
    """An AWS call refused for its rate (what the SDK retries, until its attempts run out)."""
    return isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") in THROTTLING_CODES


def patiently(call: Callable[[], T], seconds: float, pause: float = 0.2) -> T:
    """Make an AWS call; while it is throttled past the SDK's own retries, wait and make it
    again, for up to `seconds` (for a write that must not be lost, such as a run's ending)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except ClientError as error:
            if not is_throttled(error) or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 5.0)


class TableAdapter:
    """Base of the DynamoDB adapters: a table by name, resolved on first use, or handed in."""

    def __init__(self, table_name: str, table: Any = None) -> None:
        self._table_name = table_name
        self._table = table

    @property
    def table(self) -> Any:
        if self._table is None:
            self._table = dynamodb_table(self._table_name)
        return self._table
