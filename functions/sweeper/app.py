from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskrun.runs.sweeper import sweep
from taskrun.runtime import (
    admission,
    deliveries,
    durable_flows,
    plain_handler,
    result_store,
    run_service,
    step_functions,
    worker_dispatcher,
)
from taskrun.webhooks.deliveries import STALE_AFTER


def on_schedule(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """A scheduled event: end the runs past their deadline as of the event's time (never
    earlier than now), and queue again the webhook deliveries whose message was lost."""
    now = datetime.now(UTC)
    if isinstance(event.get("time"), str):
        now = max(now, datetime.fromisoformat(event["time"].replace("Z", "+00:00")))
    done = sweep(
        run_service().store, step_functions(), now, result_store(), worker_dispatcher(), admission(), durable_flows()
    )
    requeued = deliveries().requeue(due_before=now - STALE_AFTER)
    return {
        "checked": done.checked,
        "ended": done.ended,
        "woken": done.woken,
        "admitted": done.admitted,
        "deliveries_requeued": requeued,
    }


lambda_handler = plain_handler(on_schedule)
