from typing import Annotated

from taskrun.api import answers, caller, make_resolver
from taskrun.event_handler import Query
from taskrun.results.tasklogs import RunLogs
from taskrun.runtime import api_handler, log_store, run_service

app = make_resolver()


@app.get(
    "/v1/runs/<run_id>/logs",
    summary="What a run's task printed or logged, and the traceback of what it raised (the last 64 KB); "
    "with the cursor of an earlier answer, only what came after it",
    tags=["runs"],
    responses=answers(200, RunLogs, 403, 404, 422),
)
def run_logs(
    run_id: str,
    cursor: Annotated[
        str | None,
        Query(max_length=2000, description="The `cursor` of an earlier answer: only what came after it"),
    ] = None,
) -> RunLogs:
    run = run_service().get(run_id, access=caller(app).tasks)  # an unknown run is not found, rather than no logs
    logs = log_store()
    if logs is None:
        return RunLogs(run_id=run.run_id, text="", truncated=False, cursor="", ended=run.status.is_done)
    return logs.read(run.run_id, ended=run.status.is_done, cursor=cursor)


lambda_handler = api_handler(app)
