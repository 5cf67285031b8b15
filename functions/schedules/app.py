from http import HTTPStatus
from typing import Annotated

from taskrun.api import answers, caller, json_response, make_resolver
from taskrun.event_handler import Query, Response
from taskrun.ids import TASK_ID_PATTERN
from taskrun.models import RunView
from taskrun.runtime import api_handler, schedules, view
from taskrun.schedules.models import ExecuteRequest, ScheduleList, SchedulePatch, ScheduleRequest, ScheduleView

app = make_resolver()


@app.post(
    "/v1/schedules",
    summary="Schedule a task: cron(...), rate(...) or at(...) in a timezone",
    tags=["schedules"],
    responses=answers(201, ScheduleView, 400, 403, 404, 415, 422),
)
def create_schedule(body: ScheduleRequest) -> Response[str]:
    schedule = schedules().create(body, caller(app).tasks)
    return json_response(schedule, HTTPStatus.CREATED, {"Location": f"/v1/schedules/{schedule.schedule_id}"})


@app.get(
    "/v1/schedules",
    summary="Schedules, paged with next_cursor",
    tags=["schedules"],
    responses=answers(200, ScheduleList, 403, 422),
)
def list_schedules(
    task_id: Annotated[str | None, Query(min_length=1, max_length=200, pattern=TASK_ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=1000)] = None,
) -> ScheduleList:
    return schedules().list(task_id, limit, cursor, caller(app).tasks)


@app.get(
    "/v1/schedules/<schedule_id>",
    summary="One schedule, its next run and its last",
    tags=["schedules"],
    responses=answers(200, ScheduleView, 403, 404),
)
def get_schedule(schedule_id: str) -> ScheduleView:
    return schedules().get(schedule_id, caller(app).tasks)


@app.patch(
    "/v1/schedules/<schedule_id>",
    summary="Change a schedule (only the fields sent)",
    tags=["schedules"],
    responses=answers(200, ScheduleView, 400, 403, 404, 415, 422),
)
def update_schedule(schedule_id: str, body: SchedulePatch) -> ScheduleView:
    return schedules().update(schedule_id, body, caller(app).tasks)


@app.delete(
    "/v1/schedules/<schedule_id>",
    summary="Delete a schedule (its runs are kept)",
    tags=["schedules"],
    responses=answers(204, None, 403, 404, description="Deleted"),
)
def delete_schedule(schedule_id: str) -> Response[str]:
    schedules().delete(schedule_id, caller(app).tasks)
    return Response(status_code=HTTPStatus.NO_CONTENT, body="")


@app.post(
    "/v1/schedules/<schedule_id>/execute",
    summary="Run a schedule's task now",
    tags=["schedules"],
    responses=answers(201, RunView, 400, 403, 404, 415, 422, description="The run was started"),
)
def execute_schedule(schedule_id: str, body: ExecuteRequest | None = None) -> Response[str]:
    run = schedules().execute(schedule_id, body or ExecuteRequest(), caller(app).tasks)
    return json_response(view(run), HTTPStatus.CREATED, {"Location": f"/v1/runs/{run.run_id}"})


lambda_handler = api_handler(app)
