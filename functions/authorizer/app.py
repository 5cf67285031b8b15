from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from taskrun.access.authorizer import authorizer_policy
from taskrun.errors import Unauthorized
from taskrun.runtime import cached_keys, logger, plain_handler
from taskrun.settings import get_settings


def authorize(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return authorizer_policy(event, cached_keys(), get_settings().shared_usage_key)
    except Unauthorized as error:
        logger.info("request refused", extra={"reason": error.detail})
        raise Exception("Unauthorized") from error  # API Gateway's signal for a 401


lambda_handler = plain_handler(authorize)
