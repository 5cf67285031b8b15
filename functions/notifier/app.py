from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskrun.notify import release_task_tokens
from taskrun.runtime import plain_handler, step_functions


def on_run_changes(event: dict[str, Any], context: LambdaContext) -> dict[str, int]:
    return {"released": release_task_tokens(event["Records"], step_functions())}


lambda_handler = plain_handler(on_run_changes)
