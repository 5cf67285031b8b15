"""The API's request authorizer: the policy API Gateway applies to a request, from the key it
presents (the routes the key's scopes open, its task patterns, its usage-plan key), and the
answer to a request whose credentials are ambiguous."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskrun.access.keys import ApiKey, KeyFinder, ambiguous_credentials, authenticate
from taskrun.access.scopes import allowed_routes, scope_of
from taskrun.access.usage import usage_identifier
from taskrun.errors import Unauthorized


def authorizer_policy(event: Mapping[str, Any], keys: KeyFinder, shared_usage_key: str = "") -> dict[str, Any]:
    """The answer of a REST API request authorizer: allow the routes the key's scopes open.

    A missing or wrong key raises Unauthorized, which the handler turns into API Gateway's
    "Unauthorized" (401); a route outside the key's scopes is refused by API Gateway itself
    (403, ACCESS_DENIED) without its function running. The policy names every route the
    key may call, so a cached answer serves its next calls to any of them; each route checks
    the scope again, and the key's task patterns, handed over in the context (ids and
    patterns hold no space). The usage identifier names the key's usage-plan key, which
    API Gateway throttles the request by (taskrun.access.usage).
    """
    stage_arn = "/".join(event["methodArn"].split("/")[:2])
    if ambiguous := ambiguous_credentials(event.get("multiValueHeaders") or {}):
        return _refused_policy(ambiguous, keys, stage_arn, shared_usage_key)
    record = authenticate(event.get("headers") or {}, keys)
    resources = [f"{stage_arn}/{route}" for route in allowed_routes(record.scopes)]
    context = {"key_id": record.key_id, "scopes": " ".join(record.scopes), "tasks": " ".join(record.tasks)}
    # the scope this request's route needs, for the ACCESS_DENIED answer to name (the
    # template's `$context.authorizer.needs`); the answer is not cached (ReauthorizeEvery: 0)
    context["needs"] = scope_of(str(event.get("httpMethod", "")), str(event.get("resource", ""))) or ""
    return _allowing(record, resources, context, shared_usage_key)


def _allowing(record: ApiKey, resources: list[str], context: dict[str, str], shared_usage_key: str) -> dict[str, Any]:
    """A key's policy: Allow on these resources (none, where it opens no route), the context
    the functions read, and the usage-plan key API Gateway throttles it by."""
    statements = [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resources}] if resources else []
    policy: dict[str, Any] = {
        "principalId": record.key_id,
        "policyDocument": {"Version": "2012-10-17", "Statement": statements},
        "context": context,
    }
    if usage := usage_identifier(record, shared_usage_key):
        policy["usageIdentifierKey"] = usage
    return policy


def _refused_policy(
    ambiguous: tuple[str, list[str]], keys: KeyFinder, stage_arn: str, shared_usage_key: str
) -> dict[str, Any]:
    """The answer to a request with ambiguous credentials. An authorizer can only allow or
    refuse with 401/403, so where one of its keys is valid the request goes on with no
    scope and the refusal in its context, and every API function answers it 400 (taskrun.api);
    where none is, it is refused as any request without a valid key."""
    reason, presented = ambiguous
    for key in presented:
        try:
            record = authenticate({"X-API-KEY": key}, keys)
        except Unauthorized:
            continue
        return _allowing(record, [f"{stage_arn}/*"], {"refused": reason}, shared_usage_key)
    raise Unauthorized(reason)
