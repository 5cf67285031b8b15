"""AWS clients, made once per process on first use (never at import: the emulator must be in
place first), from one boto3 session. boto3 itself is imported on first use too, so that a
function that calls no AWS service (health, the docs) does not load it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import boto3
    from botocore.exceptions import ClientError

T = TypeVar("T")
_made = threading.Lock()  # a boto3 session is not safe to make clients from on two threads at once


def _config(**overrides: Any) -> Any:
    from botocore.config import Config

    return Config(
        **{"retries": {"mode": "standard", "max_attempts": 3}, "connect_timeout": 5, "read_timeout": 30, **overrides}
    )


@cache
def session() -> boto3.session.Session:
    import boto3

    made = boto3.session.Session()
    if os.environ.get(CALL_LOG):  # the benchmark counts the AWS requests a run makes
        made.events.register("before-parameter-build", _log_call)
    return made


CALL_LOG = "TASKRUN_AWS_CALL_LOG"


def _log_call(model: Any, params: Any = None, **_: Any) -> None:
    """One line per AWS request: the function making it, service, operation, table (if any)
    and, for a batch read, how many keys; written whole."""
    params = params if isinstance(params, dict) else {}
    table = params.get("TableName", "")
    if batch := params.get("RequestItems"):  # BatchGetItem: one table here, by its keys
        table, request = next(iter(batch.items()))
        table = f"{table} {len(request.get('Keys', []))}"
    function = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "-")
    line = f"{function} {model.service_model.service_name} {model.name} {table}\n".encode()
    descriptor = os.open(os.environ[CALL_LOG], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(descriptor, line)
    finally:
        os.close(descriptor)


def new_client(service: str, **options: Any) -> Any:
    """A client of its own (not the one `client` keeps), from this process's session, whose
    models it shares: `options` as boto3's `client()` takes them (region, credentials,
    endpoint, config)."""
    with _made:
        return session().client(service, **options)  # type: ignore[call-overload]


@cache
def client(service: str) -> Any:
    # S3 links are signed with Signature Version 4 (what every region takes), not the legacy default
    return new_client(service, config=_config(signature_version="s3v4") if service == "s3" else _config())


@cache
def waiting_client(service: str) -> Any:
    """A client for a call that waits on the other side (a synchronous invoke of a run up to
    Lambda's 15 minutes): a read timeout past that, and no retry of its own."""
    return new_client(service, config=_config(read_timeout=910, retries={"total_max_attempts": 1}))


@cache
def dynamodb_table(name: str) -> Any:
    with _made:
        return session().resource("dynamodb", config=_config()).Table(name)


def error_code(error: BaseException) -> str | None:
    """The AWS error code of a failed call (`NotFoundException`), if it is one."""
    response = getattr(error, "response", None)
    return response.get("Error", {}).get("Code") if isinstance(response, dict) else None


# What S3 answers for a key that is not there: 404 (HeadObject) or NoSuchKey to a caller
# that may list the bucket, 403 (HeadObject) or AccessDenied to one that may not.
MISSING_OBJECT_CODES = frozenset({"404", "NoSuchKey", "NotFound", "403", "AccessDenied"})


def is_condition_failure(error: ClientError) -> bool:
    """A conditional write that did not happen because its condition was false."""
    return error_code(error) == "ConditionalCheckFailedException"


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
    return error_code(error) in THROTTLING_CODES


def patiently(call: Callable[[], T], seconds: float, pause: float = 0.2) -> T:
    """Make an AWS call; while it is throttled past the SDK's own retries, wait and make it
    again, for up to `seconds` (for a write that must not be lost, such as a run's ending)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except Exception as error:
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

    def update_if(self, **request: Any) -> bool:
        """An UpdateItem whose ConditionExpression decides: whether it held and the item changed."""
        from botocore.exceptions import ClientError

        try:
            self.table.update_item(**request)
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise
        return True
