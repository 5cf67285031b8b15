from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskrun.events import FailedInvocation
from taskrun.runtime import plain_handler, worker


def record_crash(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run = worker().record_crash(FailedInvocation.model_validate(event))
    return {"run_id": run.run_id, "status": run.status.value}


lambda_handler = plain_handler(record_crash)
