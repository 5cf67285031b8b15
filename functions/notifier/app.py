from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskrun.notify import ended_runs, release_task_tokens, start_deliveries
from taskrun.runtime import deliveries, plain_handler, step_functions


def on_run_changes(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    ended = ended_runs(event["Records"])
    released = release_task_tokens(ended, step_functions())
    return {"released": released, "deliveries": start_deliveries(ended, deliveries())}


lambda_handler = plain_handler(on_run_changes)
