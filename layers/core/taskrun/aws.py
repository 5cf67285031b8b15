"""AWS clients, made once per process on first use (never at import: the emulator must be in place first)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5, read_timeout=30)


@cache
def client(service: str) -> Any:
    return boto3.session.Session().client(service, config=_CONFIG)  # type: ignore[call-overload]


@cache
def dynamodb_table(name: str) -> Any:
    return boto3.session.Session().resource("dynamodb", config=_CONFIG).Table(name)


def is_condition_failure(error: ClientError) -> bool:
    """A conditional write that did not happen because its condition was false."""
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


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
