from http import HTTPStatus
from typing import Annotated

from taskrun.api import answers, caller, json_response, make_resolver, seconds_since_arrival
from taskrun.event_handler import Body, Query, Response
from taskrun.models import MAX_WAIT_TIMEOUT, RunView
from taskrun.requests import RerunRequest
from taskrun.runs.waiting import wait_seconds
from taskrun.runtime import api_handler, run_service, view

app = make_resolver()


@app.post(
    "/v1/runs/<run_id>/rerun",
    summary="Start a new run of a run's task with the same arguments",
    description=(
        "The new run has the first one's task, arguments, tags, webhook and json_schema, and the same revision"
        ' unless the body names another (`"current"`: chosen by the traffic weights). It names the first run'
        " (`rerun_of`); the first lists it (`reruns`). It never answers from the task's cache."
    ),
    tags=["runs"],
    responses=answers(201, RunView, 400, 403, 404, 415, 422, description="The new run"),
)
def rerun(
    run_id: str,
    body: Annotated[RerunRequest | None, Body()] = None,
    wait: Annotated[bool | None, Query()] = None,
    wait_timeout: Annotated[float | None, Query(ge=0, le=MAX_WAIT_TIMEOUT)] = None,
) -> Response[str]:
    body = body or RerunRequest()
    service = run_service()
    waiting = wait_seconds(
        wait if wait is not None else body.wait,
        wait_timeout if wait_timeout is not None else body.wait_timeout,
        service.settings.max_wait_seconds,
        seconds_since_arrival(app),
    )
    run = service.rerun(run_id, body.revision, caller(app).tasks, wait_timeout=waiting)
    return json_response(view(run), HTTPStatus.CREATED, {"Location": f"/v1/runs/{run.run_id}"})


lambda_handler = api_handler(app)
