"""IAM in local mode: each function calls the emulator as its own role, and a call its role
does not allow is refused as AWS refuses it (AccessDenied).

The roles are the template's as CloudFormation would make them: the SAM transform
(samtranslator) turns each function's `Policies` into its role's policy documents, which
are resolved as the rest of local mode resolves the template. Each sandbox gets
credentials of its function's own (`LOCAL<FunctionLogicalId>`); every request the emulator
serves is judged, before moto answers it, by the policies of the function whose credentials
signed it: the action and the resource ARN come from the request as AWS's authorization
would name them, with the condition keys the template uses. The stack's own process (which
stands in for CloudFormation, the event source mappings and the state machines' service
integrations) calls with credentials of no function and is not judged.

moto judges identity policies itself only with every resource `*` and one condition
operator, so the judging is here; its exceptions give the refusals their AWS shape.
"""

from __future__ import annotations

import copy
import dataclasses
import fnmatch
import functools
import hashlib
import inspect
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from taskrun.local.resources import ACCOUNT_ID
from taskrun.local.template import Stack
from taskrun.private import private_folder, write_private

ACCESS_KEY_PREFIX = "LOCAL"


def access_key_of(principal: str) -> str:
    """The access key a function's sandbox, or a state machine's role, calls with."""
    return ACCESS_KEY_PREFIX + principal


@dataclass(frozen=True)
class Call:
    """One AWS request as IAM judges it."""

    function: str
    action: str  # `dynamodb:GetItem`
    resource: str  # an ARN, or `*` for actions that take none
    context: tuple[tuple[str, str], ...] = ()  # condition keys: (`s3:prefix`, `logs/`)


class AccessDenied(Exception):
    def __init__(self, call: Call) -> None:
        super().__init__(
            f"User: arn:aws:sts::{ACCOUNT_ID}:assumed-role/{call.function}Role/{call.function} is not authorized"
            f" to perform: {call.action} on resource: {call.resource} because no identity-based policy allows"
            f" the {call.action} action"
        )
        self.call = call


# ------------------------------------------------------------------------------ the roles


def role_policies(
    stack: Stack, boundaries: dict[str, list[dict[str, Any]]] | None = None, cache: Path | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Each function's role's policy documents, from the template translated by the SAM
    transform and resolved for this stack; each role's permissions boundary goes into
    `boundaries` when given. AWS-managed policies (basic execution, X-Ray, the stream and
    queue readers' policies of event sources) grant what local mode never calls with a
    function's credentials (logs, traces, the pollers' reads) and are left out.

    With a `cache` folder, the answer is kept there (owner only) under a digest of all it
    comes from (the template, its parameters and region, the transform's version and this
    code), and read back at the next start of the same stack: the transform takes about
    half a second, most of it importing samtranslator."""
    if cache is None:
        return _translated_role_policies(stack, boundaries)
    kept = cache / f"roles-{_roles_digest(stack)}.json"
    try:
        found = json.loads(kept.read_text())
    except (OSError, ValueError):
        found = None
    if isinstance(found, dict) and isinstance(found.get("roles"), dict) and isinstance(found.get("boundaries"), dict):
        if boundaries is not None:
            boundaries.update(found["boundaries"])
        roles: dict[str, list[dict[str, Any]]] = found["roles"]
        return roles
    found_boundaries: dict[str, list[dict[str, Any]]] = {}
    roles = _translated_role_policies(stack, found_boundaries)
    if boundaries is not None:
        boundaries.update(found_boundaries)
    try:
        private_folder(cache)
        write_private(kept, json.dumps({"roles": roles, "boundaries": found_boundaries}))
    except OSError:  # a cache that cannot be written is only slower
        pass
    return roles


def role_cache() -> Path:
    """Where the translated roles are kept between starts: $XDG_CACHE_HOME/taskrun (or ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "taskrun"


def _roles_digest(stack: Stack) -> str:
    from importlib.metadata import version

    digest = hashlib.sha256()
    for part in (
        stack.path.read_bytes(),
        json.dumps(stack.parameters, sort_keys=True).encode(),
        stack.region.encode(),
        version("aws-sam-translator").encode(),
        Path(__file__).read_bytes(),  # how the roles are read
        Path(inspect.getfile(type(stack))).read_bytes(),  # how the template is resolved
    ):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()[:32]


def _translated_role_policies(
    stack: Stack, boundaries: dict[str, list[dict[str, Any]]] | None = None
) -> dict[str, list[dict[str, Any]]]:
    import logging

    from samtranslator.translator.transform import transform

    logging.getLogger("samtranslator").setLevel(logging.ERROR)

    document = copy.deepcopy(stack.document)
    for resource in document["Resources"].values():
        properties = resource.get("Properties", {})
        for name in ("CodeUri", "DefinitionUri", "ContentUri"):
            if isinstance(properties.get(name), str):
                properties[name] = f"s3://local/{name}"  # the transform wants code in S3; the policies do not care

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    translated = transform(document, dict(stack.parameters), NoManagedPolicies())
    resources = translated["Resources"]
    roles: dict[str, list[dict[str, Any]]] = {}
    for logical_id, resource in resources.items():
        if resource["Type"] == "AWS::StepFunctions::StateMachine":
            # a state machine's calls (its Task states') are made as its role, named by its logical id
            role = resource["Properties"].get("RoleArn")
            role_id = role["Fn::GetAtt"][0] if isinstance(role, dict) and "Fn::GetAtt" in role else ""
            if role_id in resources:
                policies = resources[role_id].get("Properties", {}).get("Policies", [])
                roles[role_id] = [stack.resolve(policy["PolicyDocument"]) for policy in policies]
            continue
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        role = resource["Properties"]["Role"]
        role_id = role["Fn::GetAtt"][0] if isinstance(role, dict) and "Fn::GetAtt" in role else None
        if role_id is None or role_id not in resources:
            raise ValueError(f"{logical_id}: a role local mode cannot read ({role!r})")
        role_properties = resources[role_id].get("Properties", {})
        roles[logical_id] = [stack.resolve(policy["PolicyDocument"]) for policy in role_properties.get("Policies", [])]
        boundary = role_properties.get("PermissionsBoundary")
        if boundaries is not None and isinstance(boundary, dict) and boundary.get("Ref") in resources:
            document = resources[boundary["Ref"]]["Properties"]["PolicyDocument"]
            boundaries[logical_id] = [stack.resolve(document)]
    return roles


# ------------------------------------------------------------------------------ judging


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@functools.lru_cache(maxsize=4096)
def _pattern(text: str, ignore_case: bool) -> re.Pattern[str]:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
    return re.compile(regex, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)


def _matches(patterns: Any, value: str, ignore_case: bool = False) -> bool:
    return any(_pattern(str(p), ignore_case).fullmatch(value) for p in _listed(patterns))


_STRING_TESTS: dict[str, Callable[[str, str], bool]] = {
    "StringEquals": lambda want, got: want == got,
    "StringNotEquals": lambda want, got: want != got,
    "StringLike": lambda want, got: fnmatch.fnmatchcase(got, want),
    "StringNotLike": lambda want, got: not fnmatch.fnmatchcase(got, want),
    "ArnEquals": lambda want, got: want == got,
    "ArnLike": lambda want, got: fnmatch.fnmatchcase(got, want),
    "Bool": lambda want, got: want.lower() == got.lower(),
}


def _condition_holds(operator: str, key: str, wanted: Any, context: Mapping[str, list[str]]) -> bool:
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    qualifier, _, base = base.rpartition(":")
    test = _STRING_TESTS.get(base)
    if test is None:
        raise ValueError(f"local mode does not judge the condition operator {operator!r}")
    values = context.get(key)
    if values is None:
        return if_exists or base.startswith(("StringNot",))
    negated = base.startswith("StringNot")
    wanted_values = [str(w) for w in _listed(wanted)]

    def one(got: str) -> bool:
        results = [test(w, got) for w in wanted_values]
        return all(results) if negated else any(results)

    if qualifier == "ForAllValues":
        return all(one(got) for got in values)
    return any(one(got) for got in values)


def _conditions_hold(conditions: Mapping[str, Mapping[str, Any]] | None, context: Mapping[str, list[str]]) -> bool:
    return all(
        _condition_holds(operator, key, wanted, context)
        for operator, keys in (conditions or {}).items()
        for key, wanted in keys.items()
    )


def allows(policies: Iterable[Mapping[str, Any]], call: Call) -> bool:
    """IAM's verdict on an identity's policies: an explicit Deny wins, else an Allow is
    needed; each statement by Action/NotAction, Resource/NotResource and Condition."""
    context: dict[str, list[str]] = {}
    for key, value in call.context:
        context.setdefault(key, []).append(value)
    allowed = False
    for policy in policies:
        for statement in _listed(policy.get("Statement", [])):
            if "Action" in statement:
                applies = _matches(statement["Action"], call.action, ignore_case=True)
            else:
                applies = not _matches(statement.get("NotAction", []), call.action, ignore_case=True)
            if applies and "Resource" in statement:
                applies = _matches(statement["Resource"], call.resource)
            elif applies:
                applies = not _matches(statement.get("NotResource", []), call.resource)
            if not applies or not _conditions_hold(statement.get("Condition"), context):
                continue
            if statement.get("Effect") == "Deny":
                return False
            allowed = True
    return allowed


# ------------------------------------------------------------------------------ naming the call


def _body_json(response: Any) -> dict[str, Any]:
    body = getattr(response, "body", None) or b""
    if isinstance(body, dict):
        return body
    try:
        parsed = json.loads(body.decode() if isinstance(body, bytes) else body or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _credential_scope(headers: Mapping[str, str], query: Mapping[str, list[str]]) -> list[str]:
    """A signed request's credential scope, `[access key, date, region, service, "aws4_request"]`,
    from its Authorization header or, for a presigned URL, its query."""
    authorization = headers.get("Authorization") or headers.get("authorization") or ""
    credential = authorization.partition("Credential=")[2].split(",")[0] or (query.get("X-Amz-Credential") or [""])[0]
    return credential.split("/")


# S3 operations whose permission has another name
S3_ACTIONS = {
    "ListObjects": "ListBucket",
    "ListObjectsV2": "ListBucket",
    "ListObjectVersions": "ListBucketVersions",
    "HeadBucket": "ListBucket",
    "HeadObject": "GetObject",
    "DeleteObjects": "DeleteObject",
}


def describe(response: Any, service: str, action: str, resource: str) -> list[Call]:
    """The calls IAM sees in one request to the emulator (a batch names several resources)."""
    region = getattr(response, "region", "us-east-1")
    url = urlsplit(getattr(response, "uri", "") or "")
    path = unquote(url.path)
    query = parse_qs(url.query)
    body = _body_json(response) if service not in ("s3",) else {}
    prefix = f"arn:aws:{service}:{region}:{ACCOUNT_ID}"

    if service == "dynamodb":
        table = f"{prefix}:table/"
        if action in ("BatchGetItem", "BatchWriteItem"):
            return [_call(f"dynamodb:{action}", table + name) for name in body.get("RequestItems", {})]
        if action == "TransactWriteItems":
            calls = []
            for item in body.get("TransactItems", []):
                for kind, spec in item.items():
                    item_action = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}.get(kind)
                    calls.append(_call(f"dynamodb:{item_action or 'ConditionCheckItem'}", table + spec["TableName"]))
            return calls
        if action == "TransactGetItems":
            items = body.get("TransactItems", [])
            return [_call("dynamodb:GetItem", table + item["Get"]["TableName"]) for item in items]
        name = body.get("TableName", "*")
        arn = table + name + (f"/index/{body['IndexName']}" if body.get("IndexName") else "")
        if "StreamArn" in body:
            arn = body["StreamArn"]
        return [_call(f"dynamodb:{action}", arn)]
    if service == "lambda":
        match = re.search(r"/functions/([^/]+)", path)
        # a durable execution's calls are on its function (taskrun.local.durable_engine names it)
        name = getattr(response, "durable_function", None) or (match.group(1) if match else "*")
        arn = name if name.startswith("arn:") else f"{prefix}:function:{name}"
        return [_call(f"lambda:{'InvokeFunction' if action == 'Invoke' else action}", arn)]
    if service == "states":
        arn = body.get("stateMachineArn") or body.get("executionArn") or "*"
        return [_call(f"states:{action}", arn)]
    if service == "sqs":
        url_of_queue = body.get("QueueUrl") or (query.get("QueueUrl") or [""])[0]
        name = url_of_queue.rstrip("/").rsplit("/", 1)[-1] if url_of_queue else ""
        arn = f"{prefix}:{name}" if name else resource
        return [_call(f"sqs:{action}", arn)]
    if service == "s3":
        context: tuple[tuple[str, str], ...] = ()
        action = S3_ACTIONS.get(action, action)
        if action == "ListBucket" and query.get("prefix"):
            context = (("s3:prefix", query["prefix"][0]),)
        return [_call(f"s3:{action}", resource, context)]
    if service == "scheduler":
        match = re.search(r"/schedules/([^/?]+)", path)
        group = (query.get("groupName") or [body.get("GroupName", "default")])[0]
        if match:
            return [_call(f"scheduler:{action}", f"{prefix}:schedule/{group}/{match.group(1)}")]
        return [_call(f"scheduler:{action}", f"{prefix}:schedule-group/{group}" if "group" in path else "*")]
    if service == "events":
        bus = body.get("Entries", [{}])[0].get("EventBusName", "default") if body.get("Entries") else "default"
        arn = bus if bus.startswith("arn:") else f"{prefix}:event-bus/{bus}"
        return [_call(f"events:{action}", arn)]
    if service == "apigateway":
        method = getattr(response, "method", "GET")
        return [_call(f"apigateway:{method}", f"arn:aws:apigateway:{region}::{path}")]
    if service == "secretsmanager":
        return [_call(f"secretsmanager:{action}", str(body.get("SecretId", "*")))]
    return [_call(f"{service}:{action}", resource)]


def _call(action: str, resource: str, context: tuple[tuple[str, str], ...] = ()) -> Call:
    return Call("", action, resource, context)


# ------------------------------------------------------------------------------ the judge


class Judge:
    """Judges every request the emulator serves by the policies of the function that signed it."""

    def __init__(
        self, roles: dict[str, list[dict[str, Any]]], boundaries: dict[str, list[dict[str, Any]]] | None = None
    ) -> None:
        self.roles = roles
        self.boundaries = boundaries or {}  # a role's permissions boundary: what it allows at most
        self.keys = {access_key_of(function): function for function in roles}
        self.checked: set[Call] = set()
        self.refused: list[Call] = []
        self._lock = threading.Lock()
        self.object_exists: Callable[[str], bool] = lambda arn: True  # the emulator's S3 says

    def credentials(self, function: str) -> dict[str, str]:
        key = access_key_of(function)
        return {"AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": "local", "AWS_SESSION_TOKEN": "local"}

    def judge(self, response: Any, action: str, resource: str) -> None:
        url = urlsplit(getattr(response, "uri", "") or "")
        headers = {str(k): str(v) for k, v in dict(getattr(response, "headers", {}) or {}).items()}
        scope = _credential_scope(headers, parse_qs(url.query))
        function = self.keys.get(scope[0])
        if function is None:
            return  # the stack's own process
        service = scope[3] if len(scope) > 3 else "s3" if type(response).__name__.startswith("S3") else ""
        for named in describe(response, service, action, resource):
            call = dataclasses.replace(named, function=function)
            allowed = self.allowed(call)
            with self._lock:
                self.checked.add(call)
                if not allowed:
                    self.refused.append(call)
            if not allowed:
                print(f"taskrun local: AccessDenied: {function} may not {call.action} on {call.resource}", flush=True)
                raise AccessDenied(call)
            if call.action == "s3:GetObject" and not self.object_exists(call.resource):
                # S3 tells a missing key (404) only to a caller that may list the bucket; others get 403
                bucket = call.resource.split("/", 1)[0]
                if not self.allowed(Call(function, "s3:ListBucket", bucket)):
                    raise AccessDenied(call)

    def allowed(self, call: Call) -> bool:
        """The role's policies allow it, and its permissions boundary (if any) too."""
        boundary = self.boundaries.get(call.function)
        return allows(self.roles[call.function], call) and (boundary is None or allows(boundary, call))

    def write(self, path: Path) -> None:
        """The distinct calls judged, a JSON line each (function, action, resource, allowed)."""
        refused = set(self.refused)
        with path.open("a") as out:
            for call in sorted(self.checked, key=lambda c: (c.function, c.action, c.resource)):
                line = {"function": call.function, "action": call.action, "resource": call.resource}
                out.write(json.dumps({**line, "allowed": call not in refused}) + "\n")
