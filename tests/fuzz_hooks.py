"""schemathesis hooks for tests/test_fuzz.py: which refusals of schema-valid requests are
the API's rules on what no schema can judge, rather than a schema looser than the API.

Each is kept narrow: the problem must name only these locations, on these operations."""

from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData

# location of the refused value → the operations where its validity depends on more than the request
BEYOND_THE_SCHEMA: dict[str, set[str] | None] = {
    # taken only if the API gave it out, for the same filter
    "query.cursor": None,
    # taken only if its host is, and resolves to, an address taskrun may reach
    "body.webhook_url": None,
    # a zone of the IANA database (the document gives a name's shape)
    "body.timezone": {"POST /v1/schedules", "PATCH /v1/schedules/{schedule_id}"},
    # a cron's fields and an at() still ahead are the calendar's to judge
    "body.expression": {"POST /v1/schedules", "PATCH /v1/schedules/{schedule_id}"},
    # a schedule moved to a task the catalog does not hold (a new one's is a 404)
    "body.task_id": {"PATCH /v1/schedules/{schedule_id}"},
    # checked against the schedule's task, which the body does not name
    "body.arguments": {"PATCH /v1/schedules/{schedule_id}", "POST /v1/schedules/{schedule_id}/execute"},
    # a re-run's revision is one of the first run's task, which the body does not name
    "body.revision": {"POST /v1/runs/{run_id}/rerun"},
    # a start time is judged against the clock (at most a minute past, 30 days ahead), and a
    # ttl against the delay beside it
    "body.run_at": {"POST /v1/runs"},
    "body.ttl": {"POST /v1/runs"},
    # taken only for a task with a per-key limit (the catalog's `per_key`), which the
    # document's per-task branches do not spell out
    "body.concurrency_key": {"POST /v1/runs"},
}


def _beyond_the_schema(location: str, operation: str) -> bool:
    for prefix, operations in BEYOND_THE_SCHEMA.items():
        if (location == prefix or location.startswith(prefix + ".")) and (
            operations is None or operation in operations
        ):
            return True
    return False


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but a 422 for a value whose validity no schema can state."""
    if not isinstance(failure, RejectedPositiveData) or response.status_code != 422:
        return True
    try:
        errors = response.json().get("errors") or []
    except ValueError:
        return True
    operation = f"{case.method.upper()} {case.operation.path}"
    return not errors or not all(_beyond_the_schema(str(error.get("location")), operation) for error in errors)


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """One credential a request: where schemathesis fills the Bearer scheme's header with a
    token of its own beside the X-API-KEY it was given, the token becomes that same key (a
    request with two different keys is refused with 400, as the API promises)."""
    for headers in (case.headers, kwargs.get("headers")):
        if not headers:
            continue
        key = next((value for name, value in headers.items() if name.lower() == "x-api-key"), None)
        for name in [name for name in headers if name.lower() == "authorization"]:
            if key is not None:
                headers[name] = f"Bearer {key}"
