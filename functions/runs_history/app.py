from typing import Annotated

from pydantic import BaseModel

from taskrun.api import answers, caller, make_resolver
from taskrun.event_handler import Query
from taskrun.flows.stepfunctions import FlowStep
from taskrun.runtime import api_handler, run_service

app = make_resolver()


class StepList(BaseModel):
    steps: list[FlowStep]
    next_cursor: str | None = None


@app.get(
    "/v1/runs/<run_id>/history",
    summary="A flow run's steps: name, status, times, output or error",
    tags=["runs"],
    responses=answers(200, StepList, 403, 404, 422),
)
def run_history(
    run_id: str,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query()] = None,
) -> StepList:
    steps, next_cursor = run_service().history(run_id, limit, cursor, caller(app).tasks)
    return StepList(steps=steps, next_cursor=next_cursor)


lambda_handler = api_handler(app)
