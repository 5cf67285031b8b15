from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import TypeAdapter

from taskrun.events import StepRequest, WorkerEvent
from taskrun.flows.callbacks import CallbackRequest
from taskrun.runtime import callbacks, plain_handler, worker

# The API hands over a run; a flow's Task state asks for a step's result or waits for a callback.
WorkerRequest: TypeAdapter[WorkerEvent | StepRequest | CallbackRequest] = TypeAdapter(
    WorkerEvent | StepRequest | CallbackRequest
)


def execute(event: dict[str, Any], context: LambdaContext) -> Any:
    request = WorkerRequest.validate_python(event)
    seconds_left = context.get_remaining_time_in_millis() / 1000
    if isinstance(request, StepRequest):
        return worker().run_step(request, seconds_left=seconds_left)
    if isinstance(request, CallbackRequest):
        return {"callback_id": callbacks().register(request).callback_id}
    # the run as it now stands: a synchronous caller answers with it, without reading it again
    return worker().execute(request.run_id, seconds_left=seconds_left, attempt=request.attempt).model_dump(mode="json")


lambda_handler = plain_handler(execute)
