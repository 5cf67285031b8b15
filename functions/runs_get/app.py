from typing import Annotated

from taskrun.api import answers, caller, make_resolver, seconds_since_arrival
from taskrun.event_handler import Query
from taskrun.models import MAX_WAIT_TIMEOUT, RunView
from taskrun.runs.waiting import wait_seconds
from taskrun.runtime import api_handler, run_service, view

app = make_resolver()


@app.get(
    "/v1/runs/<run_id>",
    summary="One run; with wait=true, wait for it to end",
    description="Answers as soon as the run ends, or as it stands when `wait_timeout` (or the cap) passes.",
    tags=["runs"],
    responses=answers(200, RunView, 403, 404, 422),
)
def get_run(
    run_id: str,
    wait: Annotated[bool | None, Query()] = None,
    wait_timeout: Annotated[float | None, Query(ge=0, le=MAX_WAIT_TIMEOUT)] = None,
) -> RunView:
    service = run_service()
    waiting = wait_seconds(wait, wait_timeout, service.settings.max_wait_seconds, seconds_since_arrival(app))
    return view(service.get(run_id, wait_timeout=waiting, access=caller(app).tasks))


lambda_handler = api_handler(app)
