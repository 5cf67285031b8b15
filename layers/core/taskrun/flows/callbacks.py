"""Callback steps: a flow waits (`.waitForTaskToken`) until a client completes the step
through the API, for example a human approval.

The step's Task state sends the worker `{"callback": {...}}` with the task token; the worker
records a callback with a short id and the flow waits. A client lists a run's callbacks
and completes one with an output (SendTaskSuccess) or an error (SendTaskFailure). A
callback is completed once: it is claimed by a conditional write before the token is used.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from enum import StrEnum
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError
from pydantic import ConfigDict, Field, model_validator

from taskrun import aws
from taskrun.access.scopes import EVERY_TASK, TaskAccess
from taskrun.errors import CallbackConflict, CallbackNotFound, PayloadTooLarge
from taskrun.flows.durable import DurableCallback, DurableFlows, callbacks_of, is_durable
from taskrun.flows.stepfunctions import MAX_TASK_OUTPUT, StepFunctions
from taskrun.modelbase import Model
from taskrun.models import UtcTime, format_time, utcnow
from taskrun.runs.store import RunStore, visible

logger = Logger(child=True)
CALLBACK_ID = re.compile(r"cb_[0-9a-f]{20}")


class CallbackStatus(StrEnum):
    WAITING = "waiting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    EXPIRED = "expired"


class Callback(Model):
    callback_id: str
    run_id: str
    step: str
    status: CallbackStatus = CallbackStatus.WAITING
    request: Any = Field(default=None, description="What the flow handed the step: what is to be decided.")
    created_at: UtcTime = Field(default_factory=utcnow)
    completed_at: UtcTime | None = None
    task_token: str | None = Field(default=None, exclude=True)


class CallbackList(Model):
    callbacks: list[Callback]
    next_cursor: str | None = None


class CallbackRequest(Model):
    """`{"callback": {...}}`, what a callback step's Task state sends the worker."""

    class Step(Model):
        task_token: str
        run_id: str
        step: str
        request: Any = None

    callback: Step


class CompleteCallback(Model):
    """Body of POST /v1/runs/{run_id}/callbacks/{callback_id}: an output, or an error."""

    # the document says what the validator below refuses: an output and an error together
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "not": {
                "required": ["output", "error"],
                "properties": {"output": {"not": {"type": "null"}}, "error": {"type": "string"}},
            }
        },
    )

    output: Any = None
    error: str | None = Field(default=None, max_length=256, description="Fails the step with this error name.")
    cause: str | None = Field(default=None, max_length=32768)

    @model_validator(mode="after")
    def output_or_error(self) -> CompleteCallback:
        if self.error is not None and self.output is not None:
            raise ValueError("give either output or error, not both")
        return self


class CallbackStore(aws.TableAdapter):
    """CallbacksTable: key `callback_id`; index `by_run` (run_id, callback_id)."""

    def put(self, callback: Callback) -> None:
        item = callback.model_dump(mode="json", exclude_none=True)
        item["task_token"] = callback.task_token
        item["request"] = json.dumps(callback.request)
        self.table.put_item(Item=item)

    def get(self, callback_id: str) -> Callback:
        if not CALLBACK_ID.fullmatch(callback_id):
            raise CallbackNotFound(f"no callback {callback_id[:100]!r}")
        item = self.table.get_item(Key={"callback_id": callback_id}, ConsistentRead=True).get("Item")
        if item is None:
            raise CallbackNotFound(f"no callback {callback_id!r}")
        return _callback(item)

    def of_run(self, run_id: str) -> list[Callback]:
        query: dict[str, Any] = {
            "IndexName": "by_run",
            "KeyConditionExpression": "run_id = :run_id",
            "ExpressionAttributeValues": {":run_id": run_id},
        }
        callbacks: list[Callback] = []
        while True:
            page = self.table.query(**query)
            callbacks.extend(_callback(item) for item in page["Items"])
            if "LastEvaluatedKey" not in page:
                return callbacks
            query["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def settle(self, callback_id: str, status: CallbackStatus, from_status: CallbackStatus) -> bool:
        """Move a callback from one status to another; False when it was not in `from_status`."""
        try:
            self.table.update_item(
                Key={"callback_id": callback_id},
                UpdateExpression="SET #s = :s, completed_at = :t",
                ConditionExpression="#s = :from",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":s": status.value, ":from": from_status.value, ":t": format_time(utcnow())},
            )
        except ClientError as error:
            if aws.is_condition_failure(error):
                return False
            raise
        return True


def _callback(item: dict[str, Any]) -> Callback:
    data = dict(item)
    data["request"] = json.loads(data["request"]) if "request" in data else None
    return Callback.model_validate(data)


def shown_id(durable: DurableCallback) -> str:
    """The id the API gives a code-first flow's callback (the SDK's is a long token)."""
    return "cb_" + hashlib.sha256(durable.callback_id.encode()).hexdigest()[:20]


class Callbacks:
    """A run's callbacks: an ASL flow's recorded by the worker in the callbacks table, a
    code-first flow's read from its durable execution's history."""

    def __init__(
        self, store: CallbackStore, sfn: StepFunctions, runs: RunStore, durable: DurableFlows | None = None
    ) -> None:
        self.store = store
        self.sfn = sfn
        self.runs = runs
        self.durable = durable

    def _durable_callbacks(self, run_id: str, execution_arn: str, ended: bool) -> list[tuple[Callback, str]]:
        """A code-first flow's callbacks, each with the SDK's id; those still waiting when
        the run ended are expired."""
        assert self.durable is not None
        found = []
        for durable in callbacks_of(self.durable.events(execution_arn)):
            status = CallbackStatus(durable.status)
            if ended and status is CallbackStatus.WAITING:
                status = CallbackStatus.EXPIRED
            callback = Callback(
                callback_id=shown_id(durable),
                run_id=run_id,
                step=durable.name,
                status=status,
                created_at=durable.created_at,
                completed_at=durable.completed_at,
            )
            found.append((callback, durable.callback_id))
        return found

    def _complete_durable(
        self, run_id: str, callback_id: str, answer: CompleteCallback, execution_arn: str
    ) -> Callback:
        run = self.runs.get(run_id)
        known = {
            callback.callback_id: (callback, token)
            for callback, token in self._durable_callbacks(run_id, execution_arn, False)
        }
        if callback_id not in known:
            raise CallbackNotFound(f"run {run_id} has no callback {callback_id[:100]!r}")
        callback, token = known[callback_id]
        if callback.status is not CallbackStatus.WAITING:
            raise CallbackConflict(f"callback {callback_id} is {callback.status} already; a callback is completed once")
        if run.status.is_done:
            raise CallbackConflict(f"run {run_id} is {run.status}: its callbacks can no longer be completed")
        assert self.durable is not None
        if answer.error is not None:
            delivered = self.durable.fail_callback(token, answer.error, answer.cause or "")
        else:
            delivered = self.durable.succeed_callback(token, answer.output)
        if not delivered:
            raise CallbackConflict(f"callback {callback_id} is completed already; a callback is completed once")
        status = CallbackStatus.FAILED if answer.error is not None else CallbackStatus.SUCCEEDED
        return callback.model_copy(update={"status": status, "completed_at": utcnow()})

    def register(self, request: CallbackRequest) -> Callback:
        step = request.callback
        callback = Callback(
            callback_id=f"cb_{secrets.token_hex(10)}",
            run_id=step.run_id,
            step=step.step,
            request=step.request,
            task_token=step.task_token,
        )
        self.store.put(callback)
        logger.info("flow waits for a callback", extra={"run_id": step.run_id, "callback_id": callback.callback_id})
        return callback

    def of_run(self, run_id: str, access: TaskAccess = EVERY_TASK) -> list[Callback]:
        run = visible(self.runs, run_id, access)  # an unknown run is not found, rather than an empty list
        if self.durable is not None and run.execution_arn and is_durable(run.execution_arn):
            return [callback for callback, _ in self._durable_callbacks(run_id, run.execution_arn, run.status.is_done)]
        return sorted(self.store.of_run(run_id), key=lambda callback: callback.created_at)

    def complete(
        self, run_id: str, callback_id: str, answer: CompleteCallback, access: TaskAccess = EVERY_TASK
    ) -> Callback:
        run = visible(self.runs, run_id, access)
        size = len(json.dumps(answer.output))
        if size > MAX_TASK_OUTPUT:
            raise PayloadTooLarge(
                f"the output is {size} characters of JSON; a flow's step takes at most {MAX_TASK_OUTPUT}"
            )
        if self.durable is not None and run.execution_arn and is_durable(run.execution_arn):
            return self._complete_durable(run_id, callback_id, answer, run.execution_arn)
        callback = self.store.get(callback_id)
        if callback.run_id != run_id:
            raise CallbackNotFound(f"run {run_id} has no callback {callback_id!r}")
        if callback.status is not CallbackStatus.WAITING:
            raise CallbackConflict(f"callback {callback_id} is {callback.status} already; a callback is completed once")
        run = self.runs.get(run_id)
        if run.status.is_done:
            self.store.settle(callback_id, CallbackStatus.EXPIRED, from_status=CallbackStatus.WAITING)
            raise CallbackConflict(f"run {run_id} is {run.status}: its callbacks can no longer be completed")
        status = CallbackStatus.FAILED if answer.error is not None else CallbackStatus.SUCCEEDED
        if not self.store.settle(callback_id, status, from_status=CallbackStatus.WAITING):
            used = self.store.get(callback_id)
            raise CallbackConflict(f"callback {callback_id} is {used.status} already; a callback is completed once")
        assert callback.task_token is not None
        try:
            delivered = self.sfn.release(callback.task_token, answer.output, answer.error, answer.cause or "")
        except Exception:
            self.store.settle(callback_id, CallbackStatus.WAITING, from_status=status)  # it can be completed again
            raise
        if not delivered:
            self.store.settle(callback_id, CallbackStatus.EXPIRED, from_status=status)
            raise CallbackConflict(
                f"callback {callback_id} can no longer be completed: the flow stopped waiting for it"
            )
        return self.store.get(callback_id)
