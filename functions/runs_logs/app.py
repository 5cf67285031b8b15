from taskrun.api import answers, caller, make_resolver
from taskrun.runtime import api_handler, result_store, run_service
from taskrun.tasklogs import RunLogs

app = make_resolver()


@app.get(
    "/v1/runs/<run_id>/logs",
    summary="What a run's task printed or logged, and the traceback of what it raised (the last 64 KB)",
    tags=["runs"],
    responses=answers(200, RunLogs, 403, 404),
)
def run_logs(run_id: str) -> RunLogs:
    run = run_service().get(run_id, access=caller(app).tasks)  # an unknown run is not found, rather than no logs
    results = result_store()
    text, truncated = results.logs(run.run_id) if results is not None else ("", False)
    return RunLogs(run_id=run.run_id, text=text, truncated=truncated)


lambda_handler = api_handler(app)
