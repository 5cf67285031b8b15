"""Batches of runs: up to 100 start requests in one call, each answered on its own (its run,
or the problem that refused it) without failing the others, in the order they came."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from pydantic import ValidationError

from taskrun.access.scopes import TaskAccess
from taskrun.api import Problem, make_problem, problem_of
from taskrun.errors import FieldError, IdempotencyConflict, InvalidInput, TaskrunError
from taskrun.models import Run
from taskrun.requests import BatchItem, StartRunRequest
from taskrun.runs.idempotency import IdempotencyStore, OnceKey
from taskrun.runs.service import RunRequest, RunService


def start_batch(
    service: RunService,
    requests: list[dict[str, Any]],
    access: TaskAccess,
    shown: Any,
    once: OnceKey | None = None,
    keys: IdempotencyStore | None = None,
) -> list[BatchItem]:
    """Start each request as POST /v1/runs would (no waiting). With `once` (the batch's
    Idempotency-Key), request i is started once under that key: a repeated batch answers
    the same runs (200 each); the same key with another batch is IdempotencyConflict, raised
    before any run starts (the batch answers 409). `shown` turns a run into its API view."""
    items: list[BatchItem] = []
    for index, data in enumerate(requests):
        try:
            run, replayed = _start_one(service, index, data, access, once, keys)
        except IdempotencyConflict:
            # every request's record holds the whole batch's digest: the first that finds another
            # batch under the key comes before any run was started
            raise
        except TaskrunError as error:
            items.append(_refused(problem_of(error)))
            continue
        except _Invalid as invalid:
            items.append(_refused(invalid.problem))
            continue
        status = HTTPStatus.OK if replayed else HTTPStatus.CREATED
        items.append(BatchItem(status=status.value, run=shown(run)))
    return items


class _Invalid(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def _start_one(
    service: RunService,
    index: int,
    data: dict[str, Any],
    access: TaskAccess,
    once: OnceKey | None,
    keys: IdempotencyStore | None,
) -> tuple[Run, bool]:
    location = f"body.runs.{index}"
    try:
        body = StartRunRequest.model_validate(data)
    except ValidationError as error:
        errors = [
            FieldError(".".join([location, *(str(part) for part in item["loc"])]), item["msg"], item.get("input"))
            for item in error.errors(include_url=False)
        ]
        raise _Invalid(make_problem(HTTPStatus.UNPROCESSABLE_ENTITY, "the request is not valid", errors)) from error
    if body.wait or body.wait_timeout is not None:
        errors = [FieldError(f"{location}.wait", "a batch does not wait; get each run to follow it", True)]
        raise _Invalid(make_problem(HTTPStatus.UNPROCESSABLE_ENTITY, "the request is not valid", errors))
    request = RunRequest.of(body, access)
    try:
        if once is not None and keys is not None:
            return service.start_once(request, once.item(index), keys)
        return service.start(request), False
    except TaskrunError as error:
        if isinstance(error, InvalidInput):
            error.errors = [_relocated(field, location) for field in error.errors]
        raise


def _relocated(field: FieldError, location: str) -> FieldError:
    """`body.arguments.x` of request i is `body.runs.i.arguments.x` of the batch."""
    if field.location.startswith("body."):
        return FieldError(location + field.location.removeprefix("body"), field.message, field.value)
    return field


def _refused(problem: Problem) -> BatchItem:
    return BatchItem(status=problem.status, problem=problem.model_dump(mode="json"))
