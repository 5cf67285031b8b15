from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskrun.runtime import flow_host, plain_handler


def on_invocation(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """One invocation of a code-first flow's durable execution (taskrun.flows.host)."""
    return flow_host().handle(event, context)


lambda_handler = plain_handler(on_invocation)
