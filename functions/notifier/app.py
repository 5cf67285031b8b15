from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskrun.runs.notify import admit_waiting, ended_runs, release_task_tokens, start_deliveries
from taskrun.runtime import admission, deliveries, plain_handler, step_functions


def on_run_changes(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    ended = ended_runs(event["Records"])
    released = release_task_tokens(ended, step_functions())
    limits = admission()
    admitted = admit_waiting(event["Records"], limits) if limits is not None else 0
    return {"released": released, "deliveries": start_deliveries(ended, deliveries()), "admitted": admitted}


lambda_handler = plain_handler(on_run_changes)
