from taskrun.api import answers, caller, make_resolver
from taskrun.models import RunView
from taskrun.runtime import api_handler, run_service, view

app = make_resolver()


@app.post(
    "/v1/runs/<run_id>/cancel",
    summary="Cancel a pending or running run",
    tags=["runs"],
    responses=answers(200, RunView, 403, 404, 409, description="The run, cancelled"),
)
def cancel_run(run_id: str) -> RunView:
    return view(run_service().cancel(run_id, caller(app).tasks))


lambda_handler = api_handler(app)
