"""API Gateway (REST) in front of the local functions: HTTP in, complete proxy events out.

Routes come from the template's `Api` events; routes with the default authorizer go
through the authorizer function first, whose refusals answer with the template's own
gateway responses.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from taskrun.local.lambdas import LambdaRuntime, sandbox_deadline
from taskrun.local.resources import ACCOUNT_ID, Route
from taskrun.local.sandbox import FunctionError, InvokeRefused
from taskrun.local.template import Stack
from taskrun.local.throttle import Throttle
from taskrun.local.usage import limits_of

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit
MAX_EVENT_BYTES = 6 * 1024 * 1024  # Lambda's synchronous payload limit
READ_TIMEOUT_SECONDS = 30.0
INTEGRATION_TIMEOUT_SECONDS = 29.0  # API Gateway's default; the function goes on past it
LISTEN_BACKLOG = 1024
STAGE = "local"
CONTEXT_VARIABLE = re.compile(r"\$context\.([A-Za-z0-9_.]+[A-Za-z0-9_])")  # in a gateway response's template
TEXT_TYPES = ("application/json", "application/problem+json", "text/", "application/xml", "application/javascript")


@dataclass
class GatewayResponse:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


def problem(status: HTTPStatus, detail: str) -> GatewayResponse:
    body: dict[str, Any] = {
        "type": f"urn:taskrun:problem:{status.phrase.lower().replace(' ', '-')}",
        "title": status.phrase,
        "status": status.value,
        "detail": detail,
        "errors": [],
    }
    return GatewayResponse(status.value, {"Content-Type": "application/problem+json"}, json.dumps(body).encode())


def policy_allows(document: Mapping[str, Any], method_arn: str) -> bool:
    """Whether an authorizer's policy lets the request through, as API Gateway judges it: an
    Allow statement whose resource matches the method ARN (`*` any characters, `?` one), and
    no Deny statement that does."""

    def matches(statement: Mapping[str, Any]) -> bool:
        resources = statement.get("Resource", [])
        for resource in [resources] if isinstance(resources, str) else resources:
            pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in str(resource))
            if re.fullmatch(pattern, method_arn, re.DOTALL):  # `*` spans any character, a newline too
                return True
        return False

    statements = document.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    if any(statement.get("Effect") == "Deny" and matches(statement) for statement in statements):
        return False
    return any(statement.get("Effect") == "Allow" and matches(statement) for statement in statements)


class Gateway:
    """Turns one HTTP request into the proxy event the function behind the route receives."""

    def __init__(self, stack: Stack, runtime: LambdaRuntime, throttle: Throttle | None = None) -> None:
        self.stack = stack
        self.runtime = runtime
        self.throttle = throttle
        self.routes = stack.routes()
        self.authorizer = stack.authorizer_function()
        self.gateway_responses = stack.gateway_responses()
        self._integrations = ThreadPoolExecutor(max_workers=LISTEN_BACKLOG, thread_name_prefix="integration")

    def handle(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | Sequence[tuple[str, str]],
        body: bytes,
        source_ip: str = "127.0.0.1",
    ) -> GatewayResponse:
        """`headers` as sent, in order: a name sent twice is in the event's multiValueHeaders twice."""
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        url = urlsplit(target)
        path = unquote(url.path)
        if len(body) > MAX_BODY_BYTES:
            return self.gateway_response("REQUEST_TOO_LARGE", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        matches = [(route, route.pattern.match(path)) for route in self.routes]
        on_path = [(route, match) for route, match in matches if match]
        if not on_path:
            return self.gateway_response("MISSING_AUTHENTICATION_TOKEN", HTTPStatus.NOT_FOUND)  # REST APIs' answer
        # the most specific resource takes the request, as API Gateway's does: a method it
        # lacks is not looked for on a templated path that matches too (/v1/runs/batch is not
        # /v1/runs/{run_id})
        resource = on_path[0][0].path
        on_path = [(route, match) for route, match in on_path if route.path == resource]
        chosen = next(((route, match) for route, match in on_path if route.method == method), None)
        if chosen is None:
            allowed = ", ".join(sorted({route.method for route, _ in on_path}))
            response = problem(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}")
            response.headers["Allow"] = allowed
            return response
        route, match = chosen
        if self.throttle is not None and (wait := self.throttle.for_stage()):
            return self.throttled(wait)
        event = self._proxy_event(route, method, path, url.query, pairs, body, match.groupdict(), source_ip)
        wait_until = sandbox_deadline()  # the authorizer's wait for a sandbox and the integration's, in all
        if route.authorized and self.authorizer:
            refusal = self._authorize(event, wait_until)
            if refusal is not None:
                return refusal
        if route.api_key_required:
            # the key source is AUTHORIZER: the usage-plan key is the one the authorizer named
            usage_key = event["requestContext"]["identity"].get("apiKey")
            limits = limits_of(self.stack.region, usage_key)
            if limits is None:
                return self.gateway_response("INVALID_API_KEY", HTTPStatus.FORBIDDEN)
            if self.throttle is not None and (wait := self.throttle.for_key(str(usage_key), *limits)):
                return self.throttled(wait)
        event_text = json.dumps(event)
        if len(event_text) > MAX_EVENT_BYTES:
            return self.gateway_response("REQUEST_TOO_LARGE", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        invocation = self._integrations.submit(self.runtime.invoke_text, route.function, event_text, wait_until)
        try:
            answer = json.loads(invocation.result(timeout=INTEGRATION_TIMEOUT_SECONDS))
        except TimeoutError:
            return self.gateway_response("INTEGRATION_TIMEOUT", HTTPStatus.GATEWAY_TIMEOUT)
        except FunctionError as error:
            if isinstance(error, InvokeRefused) and error.throttled:
                return self.throttled(1)  # every sandbox of the function is busy
            print(f"{route.function} failed: {error.payload['errorType']}: {error}", flush=True)
            return self.gateway_response("INTEGRATION_FAILURE", HTTPStatus.BAD_GATEWAY)
        return self._from_proxy_result(answer)

    def _authorize(self, event: dict[str, Any], wait_until: float) -> GatewayResponse | None:
        assert self.authorizer is not None
        request = {
            "type": "REQUEST",
            "methodArn": (
                f"arn:aws:execute-api:{self.stack.region}:{ACCOUNT_ID}:local/{STAGE}/"
                f"{event['httpMethod']}{event['path']}"  # the path as sent, as API Gateway's ARN holds it
            ),
            **{key: event[key] for key in ("resource", "path", "httpMethod", "headers", "multiValueHeaders")},
            **{key: event[key] for key in ("queryStringParameters", "pathParameters", "requestContext")},
        }
        try:
            policy = self.runtime.invoke(self.authorizer, request, wait_until)
        except FunctionError as error:
            if str(error) == "Unauthorized":
                return self.gateway_response("UNAUTHORIZED", HTTPStatus.UNAUTHORIZED)
            if isinstance(error, InvokeRefused) and error.throttled:
                return self.throttled(1)  # every sandbox of the function is busy
            print(f"the authorizer failed: {error.payload['errorType']}: {error}", flush=True)
            return self.gateway_response("AUTHORIZER_FAILURE", HTTPStatus.INTERNAL_SERVER_ERROR)
        if not policy_allows(policy.get("policyDocument", {}), request["methodArn"]):
            context = {
                "httpMethod": event["httpMethod"],
                "resourcePath": event["resource"],
                **{f"authorizer.{key}": str(value) for key, value in (policy.get("context") or {}).items()},
            }
            return self.gateway_response("ACCESS_DENIED", HTTPStatus.FORBIDDEN, context)
        event["requestContext"]["authorizer"] = {
            "principalId": policy.get("principalId"),
            **policy.get("context", {}),
        }
        if policy.get("usageIdentifierKey"):
            event["requestContext"]["identity"]["apiKey"] = policy["usageIdentifierKey"]
        return None

    def throttled(self, retry_after: int) -> GatewayResponse:
        """429 (the template's THROTTLED answer) with the seconds until a token is there."""
        response = self.gateway_response("THROTTLED", HTTPStatus.TOO_MANY_REQUESTS)
        response.headers["Retry-After"] = str(retry_after)
        return response

    def gateway_response(self, kind: str, status: HTTPStatus, context: dict[str, str] | None = None) -> GatewayResponse:
        """The template's answer of this kind, its `$context.<name>` variables filled in from
        `context` as API Gateway fills them (one it does not have is empty; a value is
        escaped for the JSON string it sits in)."""
        if kind in self.gateway_responses:
            code, body = self.gateway_responses[kind]
            known = context or {}
            filled = CONTEXT_VARIABLE.sub(lambda found: json.dumps(known.get(found[1], ""))[1:-1], body)
            return GatewayResponse(code, {"Content-Type": "application/problem+json"}, filled.encode())
        return problem(status, status.description)

    def _proxy_event(
        self,
        route: Route,
        method: str,
        path: str,
        query: str,
        pairs: list[tuple[str, str]],
        body: bytes,
        path_parameters: dict[str, str],
        source_ip: str,
    ) -> dict[str, Any]:
        multi_headers: dict[str, list[str]] = {}
        for name, value in pairs:
            multi_headers.setdefault(name, []).append(value)
        headers = {name: values[-1] for name, values in multi_headers.items()}
        multi_query: dict[str, list[str]] = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            multi_query.setdefault(name, []).append(value)
        content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        is_text = not content_type or content_type.startswith(TEXT_TYPES)
        try:
            text_body = body.decode() if is_text else None
        except UnicodeDecodeError:
            text_body = None
        now = time.time()
        return {
            "resource": route.path,
            "path": path,
            "httpMethod": method,
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": {name: values[-1] for name, values in multi_query.items()} or None,
            "multiValueQueryStringParameters": multi_query or None,
            "pathParameters": path_parameters or None,
            "stageVariables": None,
            "requestContext": {
                "accountId": ACCOUNT_ID,
                "apiId": "local",
                "resourceId": route.function,
                "resourcePath": route.path,
                "httpMethod": method,
                # served at the root, as API Gateway serves a custom domain with no base path
                "path": path,
                "stage": STAGE,
                "protocol": "HTTP/1.1",
                "requestId": str(uuid.uuid4()),
                "extendedRequestId": str(uuid.uuid4()),
                "requestTime": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "requestTimeEpoch": int(now * 1000),
                "domainName": headers.get("Host", "localhost"),
                "identity": {
                    "sourceIp": source_ip,
                    "userAgent": next((v for k, v in headers.items() if k.lower() == "user-agent"), None),
                },
            },
            "body": (text_body if text_body is not None else base64.b64encode(body).decode()) if body else None,
            "isBase64Encoded": bool(body) and text_body is None,
        }

    @staticmethod
    def _from_proxy_result(answer: Any) -> GatewayResponse:
        if not isinstance(answer, dict) or "statusCode" not in answer:
            return problem(HTTPStatus.BAD_GATEWAY, "the function returned no proxy response")
        headers = {name: str(value) for name, value in (answer.get("headers") or {}).items()}
        for name, values in (answer.get("multiValueHeaders") or {}).items():
            headers[name] = ", ".join(str(value) for value in values)
        raw = answer.get("body") or ""
        body = base64.b64decode(raw) if answer.get("isBase64Encoded") else raw.encode()
        return GatewayResponse(int(answer["statusCode"]), headers, body)
