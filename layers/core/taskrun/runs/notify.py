"""What happens when a run ends, read from the runs table's stream: the task token of the
state machine that started the run is released with the run's outcome, a run with a
webhook gets its delivery recorded and queued (taskrun.webhooks.deliveries), and a run of a limited
task gives its slots back, admitting the runs waiting for them (taskrun.runs.concurrency)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from aws_lambda_powertools import Logger

from taskrun.flows.stepfunctions import StepFunctions
from taskrun.models import ACTIVE_STATUSES, Run, RunStatus
from taskrun.runs.concurrency import Admission
from taskrun.runs.items import run_from_item
from taskrun.runs.waiting import step_error, stored_result_error
from taskrun.webhooks.deliveries import Deliveries

logger = Logger(child=True)


def _image(image: dict[str, Any] | None) -> dict[str, Any]:
    from boto3.dynamodb.types import TypeDeserializer  # with boto3, which the first client imports

    deserialize = TypeDeserializer().deserialize
    return {name: deserialize(value) for name, value in (image or {}).items()}


def ended_runs(records: Iterable[dict[str, Any]]) -> list[Run]:
    """The runs that ended in these stream records: from pending or running to done, or
    recorded done (a run the result cache answered)."""
    ended = []
    for record in records:
        old, new = _image(record["dynamodb"].get("OldImage")), _image(record["dynamodb"].get("NewImage"))
        if not new or (old and old.get("status") not in ACTIVE_STATUSES):
            continue  # gone, or ended before this change (a run recorded ended, from the cache, has no old image)
        run = run_from_item(new)
        if run.status.is_done:
            ended.append(run)
    return ended


def admit_waiting(records: Iterable[dict[str, Any]], admission: Admission) -> int:
    """Give back the slots of the limited runs that ended or wait for a retry, and admit the
    runs waiting for room in each limit concerned (a run just set waiting among them)."""
    limits: dict[str, None] = {}
    for record in records:
        old, new = _image(record["dynamodb"].get("OldImage")), _image(record["dynamodb"].get("NewImage"))
        if not new or "slots" not in new:
            continue
        run = run_from_item(new)
        if not run.slots:
            continue
        ended = run.status.is_done and (not old or old.get("status") in ACTIVE_STATUSES)
        requeued = run.status is RunStatus.QUEUED and old.get("status") == RunStatus.RUNNING.value
        if ended or requeued:
            admission.give_back(run)
            limits[run.slots[0].name] = None
        elif run.waiting_for is not None and not old.get("waiting_for"):
            limits[run.waiting_for] = None
    return sum(len(admission.admit(limit)) for limit in limits)


def start_deliveries(runs: Iterable[Run], deliveries: Deliveries) -> int:
    """Record and queue the webhook delivery of each ended run that has a webhook."""
    return deliveries.start(run for run in runs if run.webhook_url)


def release_task_tokens(runs: Iterable[Run], sfn: StepFunctions) -> int:
    """For each run that ended holding a task token, send its outcome; return how many."""
    released = 0
    for run in runs:
        if not run.task_token:
            continue
        if run.status is RunStatus.SUCCEEDED and run.result_key is None:
            delivered = sfn.release(run.task_token, output=run.result)
        else:
            error = stored_result_error(run) if run.status is RunStatus.SUCCEEDED else step_error(run)
            delivered = sfn.release(run.task_token, error=type(error).__name__, cause=str(error))
        if not delivered:
            logger.warning("the calling state machine no longer waits", extra={"run_id": run.run_id})
            continue
        released += 1
        logger.info("task token released", extra={"run_id": run.run_id, "status": run.status})
    return released
