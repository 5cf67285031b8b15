from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskrun.events import StartFromStateMachine
from taskrun.runs.waiting import run_for_state_machine
from taskrun.runtime import plain_handler, run_service


def run_task(event: dict[str, Any], context: LambdaContext) -> Any:
    request = StartFromStateMachine.model_validate(event)
    return run_for_state_machine(run_service(), request, context.get_remaining_time_in_millis() / 1000)


lambda_handler = plain_handler(run_task)
