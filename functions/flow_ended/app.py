from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskrun.flows.stepfunctions import ExecutionStatusChange, end_flow_run
from taskrun.runtime import plain_handler, result_store, run_service, step_functions


def on_status_change(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    change = ExecutionStatusChange.model_validate(event["detail"])
    run = end_flow_run(change, run_service().store, step_functions(), result_store())
    return {"run_id": run.run_id if run else None, "status": run.status.value if run else None}


lambda_handler = plain_handler(on_status_change)
