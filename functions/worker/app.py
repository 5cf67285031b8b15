from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskrun.models import WorkerEvent
from taskrun.runtime import plain_handler, worker


def execute(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = WorkerEvent.model_validate(event)
    seconds_left = context.get_remaining_time_in_millis() / 1000
    run = worker().execute(request.run_id, seconds_left=seconds_left)
    return {"run_id": run.run_id, "status": run.status.value}


lambda_handler = plain_handler(execute)
