from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskrun.runtime import deliveries, plain_handler
from taskrun.webhooks.deliveries import attempt_batch


def on_messages(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return attempt_batch(event["Records"], deliveries(), context.get_remaining_time_in_millis() / 1000)


lambda_handler = plain_handler(on_messages)
