from typing import Annotated

from taskrun.api import answers, caller, make_resolver
from taskrun.event_handler import Query
from taskrun.ids import TASK_ID_PATTERN
from taskrun.models import TAG_PATTERN, RunList, RunStatus, TriggeredBy
from taskrun.runs.listing import RunFilter
from taskrun.runtime import api_handler, run_service
from taskrun.schedules.models import DECLARED_NAME_PATTERN

app = make_resolver()


@app.get(
    "/v1/runs",
    summary="Runs, newest first, as summaries; filtered and paged with next_cursor",
    tags=["runs"],
    responses=answers(200, RunList, 403, 422),
)
def list_runs(
    schedule_id: Annotated[str | None, Query(min_length=1, max_length=64, pattern=DECLARED_NAME_PATTERN)] = None,
    task_id: Annotated[str | None, Query(min_length=1, max_length=200, pattern=TASK_ID_PATTERN)] = None,
    status: Annotated[RunStatus | None, Query()] = None,
    triggered_by: Annotated[TriggeredBy | None, Query()] = None,
    tag: Annotated[str | None, Query(pattern=TAG_PATTERN, description="Runs carrying this tag.")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query()] = None,
) -> RunList:
    filters = RunFilter(
        schedule_id=schedule_id,
        task_id=task_id,
        status=status,
        triggered_by=triggered_by,
        tag=tag,
        tasks=caller(app).tasks,
    )
    runs, next_cursor = run_service().list(filters, limit, cursor)
    return RunList(runs=runs, next_cursor=next_cursor)


lambda_handler = api_handler(app)
