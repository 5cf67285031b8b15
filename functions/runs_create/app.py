from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskrun.api import answers, caller, json_response, make_resolver, once_key, seconds_since_arrival
from taskrun.event_handler import Query, Response
from taskrun.models import MAX_WAIT_TIMEOUT, RunView, utcnow
from taskrun.requests import StartRunRequest
from taskrun.results.forms import FormError, form_as_json, is_form, problem_event
from taskrun.runs.service import RunRequest
from taskrun.runs.waiting import wait_seconds
from taskrun.runtime import api_handler, file_store, idempotency_keys, run_service, view

app = make_resolver()


@app.post(
    "/v1/runs",
    summary="Start a run of a task, and wait for it to end if asked",
    description=(
        "Answers the run: ended when `wait` let it finish, else as it stands (poll it at its `Location`)."
        " With an `Idempotency-Key` header, the same key and body answer the first run again (200);"
        " the same key with another body answers 409. A run with files is sent as multipart/form-data:"
        " a `request` part holding this JSON body, and one part per file parameter."
    ),
    tags=["runs"],
    responses={
        **answers(201, RunView, 400, 403, 404, 409, 413, 415, 422, description="The run was started"),
        **answers(200, RunView, description="The run an Idempotency-Key already started"),
    },
)
def start_run(
    body: StartRunRequest,
    wait: Annotated[bool | None, Query()] = None,
    wait_timeout: Annotated[float | None, Query(ge=0, le=MAX_WAIT_TIMEOUT)] = None,
) -> Response[str]:
    service = run_service()
    request = RunRequest.of(body, caller(app).tasks)
    waiting = wait_seconds(
        wait if wait is not None else body.wait,
        wait_timeout if wait_timeout is not None else body.wait_timeout,
        service.settings.max_wait_seconds,
        seconds_since_arrival(app),
    )
    once = once_key(app, body)
    if once is None:
        run = service.start(request, wait_timeout=waiting)
        return json_response(view(run), HTTPStatus.CREATED, {"Location": f"/v1/runs/{run.run_id}"})
    run, replayed = service.start_once(request, once, idempotency_keys(), wait_timeout=waiting)
    status = HTTPStatus.OK if replayed else HTTPStatus.CREATED
    return json_response(view(run), status, {"Location": f"/v1/runs/{run.run_id}"})


handle_json = api_handler(app)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """A run sent as multipart/form-data (the request and its files) is first turned into
    the JSON request, its files kept; then the route takes it as any other."""
    if is_form(event):
        try:
            event = form_as_json(event, file_store(), utcnow())
        except FormError as error:
            return problem_event(error)
    return handle_json(event, context)
