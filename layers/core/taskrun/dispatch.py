"""The dispatcher: hands a pending run to whatever executes it."""

from __future__ import annotations

from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from taskrun import aws
from taskrun.models import Run, WorkerEvent


class DispatchFailed(Exception):
    """The run could not be handed over; it never started."""


class Dispatcher(Protocol):
    def dispatch(self, run: Run) -> None: ...


class LambdaDispatcher:
    """Scripts go to the worker Lambda by asynchronous invoke (the worker's retries and
    on-failure settings live in template.yaml)."""

    def __init__(self, worker_function: str, client: Any = None) -> None:
        self._worker_function = worker_function
        self._client = client

    def dispatch(self, run: Run) -> None:
        client = self._client or aws.client("lambda")
        try:
            client.invoke(
                FunctionName=self._worker_function,
                InvocationType="Event",
                Payload=WorkerEvent(run_id=run.run_id).model_dump_json().encode(),
            )
        except (ClientError, BotoCoreError) as error:
            raise DispatchFailed(f"the worker could not be invoked: {error}") from error
