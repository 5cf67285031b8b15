"""The schedules table: records, pages of them, and each firing claimed once."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from taskrun import aws
from taskrun.access.scopes import EVERY_TASK, TaskAccess
from taskrun.errors import ScheduleNotFound
from taskrun.models import format_time
from taskrun.runs import cursors
from taskrun.schedules.models import KIND, SCHEDULE_ID, Schedule

logger = Logger(child=True)


class ScheduleStore(aws.TableAdapter):
    """Schedules in DynamoDB: key `schedule_id`; `by_kind` lists them all, `by_task` a task's."""

    def put(self, schedule: Schedule, new: bool = False) -> None:
        item = {k: v for k, v in schedule.model_dump(mode="json").items() if v is not None}
        item["arguments"] = json.dumps(schedule.arguments)
        item["kind"] = KIND
        condition = "attribute_not_exists(schedule_id)" if new else "attribute_exists(schedule_id)"
        try:
            self.table.put_item(Item=item, ConditionExpression=condition)
        except ClientError as error:
            if aws.is_condition_failure(error) and not new:
                raise ScheduleNotFound(schedule.schedule_id) from error
            raise

    def count(self, at_most: int) -> int:
        """How many schedules the stack holds, counted up to `at_most` (the index's keys only)."""
        request: dict[str, Any] = {
            "IndexName": "by_kind",
            "KeyConditionExpression": "#k = :k",
            "ExpressionAttributeNames": {"#k": "kind"},
            "ExpressionAttributeValues": {":k": KIND},
            "Select": "COUNT",
        }
        counted = 0
        while counted < at_most:
            page = self.table.query(**request)
            counted += int(page.get("Count", 0))
            if "LastEvaluatedKey" not in page:
                break
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return counted

    def get(self, schedule_id: str) -> Schedule:
        if not SCHEDULE_ID.fullmatch(schedule_id):
            raise ScheduleNotFound(schedule_id)
        item = self.table.get_item(Key={"schedule_id": schedule_id}, ConsistentRead=True).get("Item")
        if item is None:
            raise ScheduleNotFound(schedule_id)
        return _schedule_from(item)

    def delete(self, schedule_id: str) -> None:
        if not SCHEDULE_ID.fullmatch(schedule_id):
            raise ScheduleNotFound(schedule_id)
        try:
            self.table.delete_item(
                Key={"schedule_id": schedule_id}, ConditionExpression="attribute_exists(schedule_id)"
            )
        except ClientError as error:
            if aws.is_condition_failure(error):
                raise ScheduleNotFound(schedule_id) from error
            raise

    def list(
        self, task_id: str | None, limit: int, cursor: str | None, access: TaskAccess = EVERY_TASK
    ) -> tuple[list[Schedule], str | None]:
        """A page of schedules, newest first; one query, so a page limited to a key's tasks
        may come short (with a cursor when there are more)."""
        if task_id is not None and not access.allows(task_id):
            return [], None
        index, key_name, key_value = ("by_task", "task_id", task_id) if task_id else ("by_kind", "kind", KIND)
        request: dict[str, Any] = {
            "IndexName": index,
            "KeyConditionExpression": "#k = :k",
            "ExpressionAttributeNames": {"#k": key_name},
            "ExpressionAttributeValues": {":k": key_value},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if cursor:
            before = cursors.decode(cursor, key_name, key_value, SCHEDULE_ID, cursors.filter_digest(access.patterns))
            request["KeyConditionExpression"] += " AND #id < :before"
            request["ExpressionAttributeNames"]["#id"] = "schedule_id"
            request["ExpressionAttributeValues"][":before"] = before
        if task_id is None and not access.everything:
            condition, names, values = access.condition()
            request["FilterExpression"] = condition
            request["ExpressionAttributeNames"].update(names)
            request["ExpressionAttributeValues"].update(values)
        page = self.table.query(**request)
        schedules = [_schedule_from(item) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        if not last:
            return schedules, None
        return schedules, cursors.encode(
            last["schedule_id"], key_name, key_value, cursors.filter_digest(access.patterns)
        )

    def claim_firing(self, schedule_id: str, moment: datetime, run_id: str) -> str | None:
        """Mark the schedule fired for `moment` with the id its run will have; answer that id.
        A repeated delivery of the same firing (EventBridge Scheduler delivers at least once)
        gets the id the first one chose, so that the run is made once, even if the first
        delivery died before making it; an older firing, or a schedule gone, gets None."""
        at = format_time(moment)
        try:
            self.table.update_item(
                Key={"schedule_id": schedule_id},
                UpdateExpression="SET fired_at = :t, firing_run_id = :run",
                ConditionExpression=(
                    "attribute_exists(schedule_id) AND (attribute_not_exists(fired_at) OR fired_at < :t)"
                ),
                ExpressionAttributeValues={":t": at, ":run": run_id},
            )
            return run_id
        except ClientError as error:
            if not aws.is_condition_failure(error):
                raise
        item = self.table.get_item(Key={"schedule_id": schedule_id}, ConsistentRead=True).get("Item") or {}
        if item.get("fired_at") == at and item.get("firing_run_id"):
            return str(item["firing_run_id"])
        return None

    def record_outcome(self, schedule_id: str, run_id: str | None, error: str | None) -> None:
        """The run a firing started (or why it started none)."""
        names = {"#run": "last_run_id", "#error": "last_error"}
        if run_id is not None:
            expression, values = "SET #run = :run REMOVE #error", {":run": run_id}
        else:
            expression, values = "SET #error = :error", {":error": (error or "")[:2000]}
        try:
            self.table.update_item(
                Key={"schedule_id": schedule_id},
                UpdateExpression=expression,
                ConditionExpression="attribute_exists(schedule_id)",
                ExpressionAttributeNames={k: v for k, v in names.items() if k in expression},
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if not aws.is_condition_failure(error):  # deleted meanwhile
                raise


def _schedule_from(item: dict[str, Any]) -> Schedule:
    data = dict(item)
    data["arguments"] = json.loads(data.get("arguments") or "{}")
    return Schedule.model_validate(data)
