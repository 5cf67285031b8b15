from http import HTTPStatus

from taskrun.api import answers, caller, make_resolver, once_key, seconds_since_arrival
from taskrun.requests import CompatRunRequest, CompatRunResponse
from taskrun.runs.compat import run_compat
from taskrun.runtime import api_handler, idempotency_keys, result_store, run_service

# Its contract: 422 for any body that is not its request's shape; 200 for every outcome of one that is.
MALFORMED = HTTPStatus.UNPROCESSABLE_ENTITY
app = make_resolver(malformed_status=MALFORMED)


@app.post(
    "/api/v0/tools/tasks/run",
    summary="Run a task and wait for it (the compatible synchronous endpoint)",
    description="200 for every outcome of a well-formed request, with `success` and `error_type`.",
    tags=["runs"],
    responses=answers(200, CompatRunResponse, 403, 409, 413, 422),
)
def run_task(body: CompatRunRequest) -> CompatRunResponse:
    once = once_key(app, body)
    return run_compat(
        run_service(),
        body,
        seconds_since_arrival(app),
        (once, idempotency_keys()) if once is not None else None,
        result_store(),
        caller(app).tasks,
    )


lambda_handler = api_handler(app, malformed_status=MALFORMED)
