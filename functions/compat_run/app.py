from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from taskrun.api import json_response, make_resolver, validation_errors
from taskrun.compat import run_compat
from taskrun.errors import describe_errors
from taskrun.models import CompatRunRequest, CompatRunResponse, ErrorType
from taskrun.runtime import api_handler, run_service

app = make_resolver()


@app.exception_handler(RequestValidationError)
def invalid_request(error: RequestValidationError) -> Response[str]:
    message = describe_errors("the request is not valid", validation_errors(error))
    return json_response(CompatRunResponse(success=False, error=message, error_type=ErrorType.VALIDATION_ERROR))


@app.post("/api/v0/tools/tasks/run")
def run_task(body: CompatRunRequest) -> CompatRunResponse:
    return run_compat(run_service(), body)


lambda_handler = api_handler(app)
