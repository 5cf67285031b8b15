"""Schedules on EventBridge Scheduler: each record's schedule in the stack's group, whose
target starts the run."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from taskrun import aws
from taskrun.schedules.expressions import Expression
from taskrun.schedules.models import Schedule, is_spent

logger = Logger(child=True)


class Scheduler(Protocol):
    def put(self, schedule: Schedule, expression: Expression, new: bool) -> None: ...

    def delete(self, schedule_id: str) -> None: ...


@dataclass
class EventBridgeScheduler:
    """Each schedule as an EventBridge Scheduler schedule named after it, in the stack's group,
    targeting the schedule-target function with the schedule's id and the firing's time."""

    group: str
    target_arn: str
    role_arn: str
    dead_letter_arn: str = ""
    client: Any = None

    def _client(self) -> Any:
        return self.client or aws.client("scheduler")

    def put(self, schedule: Schedule, expression: Expression, new: bool) -> None:
        target: dict[str, Any] = {
            "Arn": self.target_arn,
            "RoleArn": self.role_arn,
            "Input": json.dumps(
                {
                    "schedule_id": schedule.schedule_id,
                    "scheduled_time": "<aws.scheduler.scheduled-time>",
                    "execution_id": "<aws.scheduler.execution-id>",
                    "attempt": "<aws.scheduler.attempt-number>",
                }
            ),
            "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 3600},
        }
        if self.dead_letter_arn:
            target["DeadLetterConfig"] = {"Arn": self.dead_letter_arn}
        request: dict[str, Any] = {
            "Name": schedule.schedule_id,
            "GroupName": self.group,
            "ScheduleExpression": expression.text,
            "ScheduleExpressionTimezone": schedule.timezone,
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED" if schedule.enabled and not is_spent(schedule, expression) else "DISABLED",
            "Target": target,
            "Description": (schedule.description or schedule.task_id)[:512],
        }
        if schedule.start_at is not None and expression.period is not None:
            request["StartDate"] = schedule.start_at
        if new:
            self._client().create_schedule(**request)
            return
        try:
            self._client().update_schedule(**request)
        except ClientError as error:  # gone from the group (deleted by hand): made again
            if error.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            self._client().create_schedule(**request)

    def delete(self, schedule_id: str) -> None:
        try:
            self._client().delete_schedule(Name=schedule_id, GroupName=self.group)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
