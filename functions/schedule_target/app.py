from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskrun.models import utcnow
from taskrun.runtime import plain_handler, schedules
from taskrun.schedules.service import FireEvent


def on_firing(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """EventBridge Scheduler's target: the schedule's Input, with the firing's time filled in."""
    run = schedules().fire(FireEvent.parse(event, utcnow()))
    return {"run_id": run.run_id if run else None}


lambda_handler = plain_handler(on_firing)
