"""The compatible synchronous endpoint, POST /api/v0/tools/tasks/run.

Its clients read one shape, {success, error, error_type, job_id, result}, for every
outcome, so every outcome (unknown task, bad arguments, failure, timeout) answers 200
in that shape; authentication stays with the API's usual 401, and a body that is not the
request's shape (an invalid `json_schema` among them) with its 422.
"""

from __future__ import annotations

import json

from taskrun.access.scopes import EVERY_TASK, TaskAccess
from taskrun.errors import InvalidInput, TaskNotFound
from taskrun.models import ErrorType, RunStatus
from taskrun.requests import CompatRunRequest, CompatRunResponse
from taskrun.results.bucket import ResultStore, check_schema
from taskrun.runs.idempotency import IdempotencyStore, OnceKey
from taskrun.runs.service import RunRequest, RunService


def run_compat(
    service: RunService,
    body: CompatRunRequest,
    since_arrival: float = 0.0,
    once: tuple[OnceKey, IdempotencyStore] | None = None,
    results: ResultStore | None = None,
    access: TaskAccess = EVERY_TASK,
) -> CompatRunResponse:
    """Run and wait up to the endpoint's wait, counted from the request's arrival; with an
    idempotency key, a repeated request answers the first one's run."""
    request = RunRequest(
        task_id=body.task_id,
        arguments=body.arguments,
        task_type=body.task_type,
        json_schema=body.json_schema,
        access=access,
    )
    if body.json_schema is not None:
        check_schema(body.json_schema)  # a body the endpoint cannot take: 422, not an outcome
    waiting = max(0.0, service.settings.compat_wait_seconds - since_arrival)
    try:
        if once is None:
            run = service.start(request, wait_timeout=waiting)
        else:
            run, _ = service.start_once(request, once[0], once[1], wait_timeout=waiting)
    except TaskNotFound as error:
        return CompatRunResponse(success=False, error=error.detail, error_type=ErrorType.NOT_FOUND)
    except InvalidInput as error:
        return CompatRunResponse(
            success=False,
            error=error.summary(),
            error_type=ErrorType.VALIDATION_ERROR,
        )
    if run.status is RunStatus.SUCCEEDED and run.result_key is not None:
        return _stored_result(run.run_id, run.result_key, results)
    if run.status is RunStatus.SUCCEEDED:
        return CompatRunResponse(success=True, job_id=run.run_id, result=run.result)
    if not run.status.is_done:
        return CompatRunResponse(
            success=False,
            error=(
                f"the task did not finish within {service.settings.compat_wait_seconds:g} s; it goes on as {run.run_id}"
            ),
            error_type=ErrorType.TIMEOUT,
            job_id=run.run_id,
        )
    error_type = run.error.type if run.error else ErrorType.EXECUTION_ERROR
    if error_type is ErrorType.CANCELLED or error_type is ErrorType.DISPATCH_ERROR:
        error_type = ErrorType.EXECUTION_ERROR
    return CompatRunResponse(
        success=False,
        error=run.error.message if run.error else f"the run ended {run.status}",
        error_type=error_type,
        job_id=run.run_id,
    )


MAX_ANSWERED_RESULT_BYTES = 5 * 1024 * 1024  # the answer must stay below Lambda's 6 MB response


def _stored_result(run_id: str, key: str, results: ResultStore | None) -> CompatRunResponse:
    """A result kept in S3, handed back whole when the answer can hold it."""
    if results is not None:
        result = results.get(key)
        if len(json.dumps(result, separators=(",", ":"))) <= MAX_ANSWERED_RESULT_BYTES:
            return CompatRunResponse(success=True, job_id=run_id, result=result)
    return CompatRunResponse(
        success=False,
        error=(
            f"the result is larger than this endpoint can answer ({MAX_ANSWERED_RESULT_BYTES:,} bytes); "
            f"the run succeeded: read it from the result_url of GET /v1/runs/{run_id}"
        ),
        error_type=ErrorType.EXECUTION_ERROR,
        job_id=run_id,
    )
