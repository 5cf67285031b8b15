"""The HTTP face shared by every API function: the resolver, problem+json errors, JSON responses.

Every domain error maps to a problem here and nowhere else.
"""

from __future__ import annotations

import json
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python

from taskrun import aws
from taskrun.access.scopes import Caller, Scope, scope_of
from taskrun.errors import (
    CallbackConflict,
    CallbackNotFound,
    DeliveryConflict,
    DeliveryNotFound,
    FieldError,
    Forbidden,
    IdempotencyConflict,
    InvalidInput,
    KeyNotFound,
    PayloadTooLarge,
    RunConflict,
    RunNotFound,
    ScheduleNotFound,
    TaskNotFound,
    TaskrunError,
    Unavailable,
)
from taskrun.event_handler import (
    APIGatewayRestResolver,
    NextMiddleware,
    OpenAPIResponse,
    RequestUnsupportedContentType,
    RequestValidationError,
    Response,
)
from taskrun.modelbase import Model

if TYPE_CHECKING:
    from taskrun.runs.idempotency import OnceKey

logger = Logger(child=True)

PROBLEM_JSON = "application/problem+json"
APPLICATION_JSON = "application/json"


class ProblemField(Model):
    location: str
    message: str
    value: Any = None


class Problem(Model):
    """RFC 9457 problem details."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "urn:taskrun:problem:unprocessable-entity",
                    "title": "Unprocessable Entity",
                    "status": 422,
                    "detail": "the request is not valid",
                    "errors": [
                        {"location": "body.arguments.name", "message": "Field required", "value": None},
                    ],
                }
            ]
        }
    )

    type: str = "about:blank"
    title: str
    status: int
    detail: str
    errors: list[ProblemField] = Field(default_factory=list)


# What each problem status means on any route, for the API document.
WHEN_PROBLEM: dict[int, str] = {
    400: "The body is not valid JSON or not UTF-8 text, or the request is ambiguous (two keys, two Content-Types)",
    401: "No API key, or one that is not valid",
    403: "The key lacks the scope the route needs",
    404: "No such resource",
    409: "The request conflicts with the resource's state",
    413: "The request or a value in it is too large",
    415: "The body is not JSON",
    422: "The request is well formed but not valid; `errors` says where",
    429: "Throttled; try again after Retry-After seconds",
    500: "An unexpected error, logged with the request id",
    503: "Something the request needs is unavailable now; nothing was changed, try again later",
}


def answers(
    status: int, model: type[BaseModel] | None, *problems: int, description: str = ""
) -> dict[int, OpenAPIResponse]:
    """A route's documented responses: its success (with the model it answers) and the
    problems it can answer itself. 400, 401, 429 and 500, which any secured route can
    answer, are added to every route when the API document is made."""
    success: OpenAPIResponse = {"description": description or HTTPStatus(status).phrase}
    if model is not None:
        success["content"] = {APPLICATION_JSON: {"model": model}}
    documented = {status: success}
    for code in problems:
        documented[code] = problem_answer(code)
    return documented


def problem_answer(status: int) -> OpenAPIResponse:
    return {"description": WHEN_PROBLEM[status], "content": {PROBLEM_JSON: {"model": Problem}}}


def make_problem(
    status: HTTPStatus, detail: str, errors: list[FieldError] | None = None, title: str | None = None
) -> Problem:
    return Problem(
        type=f"urn:taskrun:problem:{status.phrase.lower().replace(' ', '-')}",
        title=title or status.phrase,
        status=status.value,
        detail=detail,
        errors=[ProblemField(location=e.location, message=e.message, value=e.value) for e in errors or []],
    )


def problem_response(
    status: HTTPStatus, detail: str, errors: list[FieldError] | None = None, title: str | None = None
) -> Response[str]:
    problem = make_problem(status, detail, errors, title)
    return Response(status_code=status.value, content_type=PROBLEM_JSON, body=problem.model_dump_json())


def problem_of(error: TaskrunError) -> Problem:
    """The problem a domain error answers (as the resolver's exception handlers write it)."""
    if isinstance(error, InvalidInput):
        return make_problem(HTTPStatus.UNPROCESSABLE_ENTITY, error.detail, error.errors)
    return make_problem(STATUS_OF_ERROR[type(error)], error.detail, title=error.title)


def proxy_problem(status: HTTPStatus, detail: str, errors: list[FieldError] | None = None) -> dict[str, Any]:
    """A problem as the proxy answer of a Lambda function, for a request refused before
    the resolver takes it."""
    response = problem_response(status, detail, errors)
    return {
        "statusCode": response.status_code,
        "headers": {"Content-Type": PROBLEM_JSON},
        "body": response.body,
        "isBase64Encoded": False,
    }


def refused_request(event: dict[str, Any]) -> dict[str, Any] | None:
    """The 400 answer to a request that is ambiguous, before anything reads it: credentials
    the authorizer found ambiguous (taskrun.access.keys), or two Content-Type headers."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    if authorizer.get("refused"):
        return proxy_problem(HTTPStatus.BAD_REQUEST, str(authorizer["refused"]))
    multi_headers = event.get("multiValueHeaders") or {}
    content_types = [
        value for name, values in multi_headers.items() if name.lower() == "content-type" for value in values
    ]
    if len(content_types) > 1:
        return proxy_problem(
            HTTPStatus.BAD_REQUEST, f"the request has {len(content_types)} Content-Type headers; send one"
        )
    return None


def refused_body(event: dict[str, Any]) -> tuple[HTTPStatus, str] | None:
    """Why a request's body is not one the API takes, judged before the resolver reads it:
    every route takes JSON alone (a run's files come as a form turned into JSON first),
    and the resolver would otherwise read a form into a model's defaults."""
    if not event.get("body"):
        return None
    headers = event.get("headers") or {}
    content_type = next((str(value) for name, value in headers.items() if name.lower() == "content-type"), "")
    media, _, parameters = content_type.partition(";")
    media = media.strip().lower()
    if not media or media == APPLICATION_JSON or (media.startswith("application/") and media.endswith("+json")):
        # every body the API takes is an object: the resolver would take an array's last item
        if not event.get("isBase64Encoded") and str(event["body"]).lstrip().startswith("["):
            return HTTPStatus.UNPROCESSABLE_ENTITY, "the body must be a JSON object, not an array"
        return None
    if media.startswith("multipart/") and "boundary=" not in parameters.lower():
        return HTTPStatus.BAD_REQUEST, f"a {media} body needs a boundary in its Content-Type"
    return (
        HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
        f"the body must be JSON; send Content-Type: application/json (not {media})",
    )


def json_response(
    model: BaseModel, status: HTTPStatus = HTTPStatus.OK, headers: dict[str, str] | None = None
) -> Response[str]:
    return Response(
        status_code=status.value,
        content_type=APPLICATION_JSON,
        body=model.model_dump_json(),
        headers=headers,
    )


def validation_errors(error: RequestValidationError) -> list[FieldError]:
    errors = []
    for item in error.errors():
        location = ".".join(str(part) for part in item.get("loc", ()))
        value = None if item.get("type") == "missing" else item.get("input")
        errors.append(
            FieldError(location, item.get("msg", item.get("type", "invalid")), to_jsonable_python(value, fallback=repr))
        )
    return errors


MAX_JSON_DEPTH = 64


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json_body(text: str) -> Any:
    """A request body as strict JSON: no NaN or Infinity, no number past Python's digit limit,
    no lone surrogate (it could be stored but never answered), at most MAX_JSON_DEPTH levels
    deep. Anything else is a JSONDecodeError, which the resolver answers as a bad body."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise json.JSONDecodeError(f"it nests deeper than {MAX_JSON_DEPTH} levels", text, 0) from None
    except json.JSONDecodeError:
        raise
    except ValueError as error:
        raise json.JSONDecodeError(str(error), text, 0) from None
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if depth > MAX_JSON_DEPTH:
            raise json.JSONDecodeError(f"it nests deeper than {MAX_JSON_DEPTH} levels", text, 0)
        if isinstance(item, dict):
            pending.extend((key, depth) for key in item)
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                raise json.JSONDecodeError(
                    "a string holds a lone surrogate, which is not Unicode text", text, 0
                ) from None
    return value


def once_key(app: APIGatewayRestResolver, body: BaseModel) -> OnceKey | None:
    """The request's Idempotency-Key, scoped to the API key that sent it, with its body."""
    from taskrun.runs.idempotency import HEADER, OnceKey

    event = app.current_event
    key = event.headers.get(HEADER) or next(
        (value for name, value in event.headers.items() if name.lower() == HEADER.lower()), None
    )
    if key is None:
        return None
    authorizer = event.raw_event.get("requestContext", {}).get("authorizer") or {}
    scope = str(authorizer.get("key_id", ""))
    return OnceKey.of(key, scope, body.model_dump(mode="json"))


def caller(app: APIGatewayRestResolver) -> Caller:
    """The key that sent the request being handled, as the authorizer found it."""
    return Caller.from_authorizer(app.current_event.raw_event.get("requestContext", {}).get("authorizer") or {})


def require_scope(app: APIGatewayRestResolver, scope: Scope) -> str:
    """The calling key's id, if it has `scope`; else Forbidden."""
    calling = caller(app)
    if scope not in calling.scopes:
        event = app.current_event
        route = f"{event.http_method} {event.resource}"
        raise Forbidden(
            f"this route ({route}) needs a key with the {scope!r} scope; this key's scopes: {' '.join(calling.scopes)}"
        )
    return calling.key_id


def check_scope(app: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[Any]:
    """Refuse a key without the scope the route needs (403). API Gateway refuses it first,
    from the authorizer's policy; this holds wherever the function is called from."""
    event = app.current_event
    scope = scope_of(event.http_method, event.resource)
    if scope is not None:
        require_scope(app, scope)
    return next_middleware(app)


def seconds_since_arrival(app: APIGatewayRestResolver) -> float:
    """How long ago API Gateway received the request being handled."""
    arrived_ms = app.current_event.request_context.request_time_epoch
    return max(0.0, time.time() - arrived_ms / 1000) if arrived_ms else 0.0


def non_json_body(app: APIGatewayRestResolver) -> str | None:
    """The content type of a body that is not JSON (a form post, curl's default for -d), if any."""
    event = app.current_event
    content_type = (event.headers.get("content-type") or "").split(";")[0].strip().lower()
    if event.body and content_type and not content_type.endswith("json"):
        return content_type
    return None


def malformed_request(app: APIGatewayRestResolver, error: Exception) -> tuple[HTTPStatus, str, list[FieldError]]:
    """What is wrong with a request the resolver could not validate, and the status that says so."""
    content_type = non_json_body(app)
    if content_type:
        detail = f"the body must be JSON; send Content-Type: application/json (not {content_type})"
        return HTTPStatus.UNSUPPORTED_MEDIA_TYPE, detail, []
    if isinstance(error, UnicodeDecodeError):
        return HTTPStatus.BAD_REQUEST, "the request body is not UTF-8 text", []
    if not isinstance(error, RequestValidationError):
        return HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "the body must be JSON; send Content-Type: application/json", []
    invalid_json = [item for item in error.errors() if item.get("type") == "json_invalid"]
    if invalid_json:
        reason = invalid_json[0].get("ctx", {}).get("error", "")
        return HTTPStatus.BAD_REQUEST, f"the request body is not valid JSON: {reason}".rstrip(": "), []
    return HTTPStatus.UNPROCESSABLE_ENTITY, "the request is not valid", validation_errors(error)


STATUS_OF_ERROR: dict[type[TaskrunError], HTTPStatus] = {
    TaskNotFound: HTTPStatus.NOT_FOUND,
    RunNotFound: HTTPStatus.NOT_FOUND,
    CallbackNotFound: HTTPStatus.NOT_FOUND,
    ScheduleNotFound: HTTPStatus.NOT_FOUND,
    IdempotencyConflict: HTTPStatus.CONFLICT,
    RunConflict: HTTPStatus.CONFLICT,
    CallbackConflict: HTTPStatus.CONFLICT,
    DeliveryNotFound: HTTPStatus.NOT_FOUND,
    DeliveryConflict: HTTPStatus.CONFLICT,
    PayloadTooLarge: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    Forbidden: HTTPStatus.FORBIDDEN,
    KeyNotFound: HTTPStatus.NOT_FOUND,
    Unavailable: HTTPStatus.SERVICE_UNAVAILABLE,
}


def make_resolver(malformed_status: HTTPStatus | None = None) -> APIGatewayRestResolver:
    """A REST API resolver with request validation and every domain error mapped to problem+json.

    A request the resolver cannot validate (not JSON, not UTF-8, not the route's shape)
    answers 400, 415 or 422 as fits, or always `malformed_status` where a route's contract
    names one status for them all."""
    app = APIGatewayRestResolver(enable_validation=True, json_body_deserializer=parse_json_body)
    app.use([check_scope])

    @app.exception_handler([RequestValidationError, RequestUnsupportedContentType, UnicodeDecodeError])
    def invalid_request(error: Exception) -> Response[str]:
        status, detail, errors = malformed_request(app, error)
        return problem_response(malformed_status or status, detail, errors)

    @app.exception_handler(InvalidInput)
    def invalid_input(error: InvalidInput) -> Response[str]:
        return problem_response(HTTPStatus.UNPROCESSABLE_ENTITY, error.detail, error.errors)

    @app.exception_handler(list(STATUS_OF_ERROR))
    def domain_error(error: TaskrunError) -> Response[str]:
        return problem_response(STATUS_OF_ERROR[type(error)], error.detail, title=error.title)

    @app.not_found
    def no_route(_: Exception) -> Response[str]:
        return problem_response(
            HTTPStatus.NOT_FOUND, f"no route {app.current_event.http_method} {app.current_event.path}"
        )

    @app.exception_handler(Exception)
    def unexpected(error: Exception) -> Response[str]:
        if aws.is_throttled(error):  # still throttled after the SDK's own retries
            logger.warning("throttled by AWS", extra={"error": str(error)})
            answer = problem_response(
                HTTPStatus.TOO_MANY_REQUESTS, "taskrun's storage is busy; try again in a moment (nothing was changed)"
            )
            answer.headers["Retry-After"] = "1"
            return answer
        logger.exception("unexpected error")
        return problem_response(HTTPStatus.INTERNAL_SERVER_ERROR, "an unexpected error occurred; it has been logged")

    return app
