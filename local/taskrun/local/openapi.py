"""The API document (OpenAPI 3.1), made from the routes and models of every API function.

Each function has a resolver of its own (one Lambda per route group); their documents are
merged with Powertools' OpenAPIMerge and then given what only the whole API knows, from
template.yaml: the routes there are, which of them need a key (the authorizer takes
`X-API-KEY` or `Authorization: Bearer`), and the problems any secured route can answer
before or after its function (400, 401, 429, 500). `taskrun openapi` writes docs/openapi.json;
the docs function serves that file, and a test keeps it equal to what this makes.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.openapi.merge import OpenAPIMerge
from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer, Tag

from taskrun import __version__
from taskrun.access.scopes import scope_of
from taskrun.api import problem_answer
from taskrun.catalog.definitions import CodeFlowRevision, FlowRevision, ScriptRevision, TaskDefinition
from taskrun.local.template import Stack

SNAPSHOT = Path("docs") / "openapi.json"
# routes that answer pages for people, not the API's JSON: left out of the document
PAGES = {("get", "/v1/openapi.json"), ("get", "/v1/docs"), ("get", "/console"), ("get", "/console/assets/{name}")}
# The MCP endpoint speaks JSON-RPC as the Model Context Protocol defines it (docs/mcp.md),
# not a resource API: the description names it, the protocol's own schema describes it.
PAGES |= {("post", "/mcp"), ("get", "/mcp"), ("delete", "/mcp")}

DESCRIPTION = """Run named tasks (Python functions, or flows on AWS Step Functions) with arguments, \
synchronously with a wait timeout or asynchronously with polling and webhooks.

Every route but health, these docs and the console's page takes a key: `X-API-KEY: <key>` or \
`Authorization: Bearer <key>`. Errors are `application/problem+json` (RFC 9457) with \
`errors: [{location, message, value}]` saying where a request went wrong.

The same tasks are MCP tools at `/mcp` (Model Context Protocol, stateless Streamable HTTP, \
same keys): `tools/list` and `tools/call`, answered by the official MCP SDK's server."""

TAGS = [
    Tag(name="runs", description="Start runs, wait for them, read their results, history, logs and deliveries"),
    Tag(name="tasks", description="The catalog of tasks and their schemas"),
    Tag(name="schedules", description="Runs on a timetable (EventBridge Scheduler)"),
    Tag(name="files", description="Files for tasks' File parameters"),
    Tag(name="keys", description="API keys (a key with the admin scope)"),
    Tag(name="service", description="The service itself"),
]
SECURITY_SCHEMES: dict[str, APIKey | HTTPBearer] = {
    "ApiKey": APIKey.model_validate({"name": "X-API-KEY", "in": APIKeyIn.header, "description": "An API key"}),
    "Bearer": HTTPBearer(description="The same API key, as `Authorization: Bearer <key>`"),
}
# Answered for any secured route by the gateway (401 from the authorizer, 429 from the
# stage's throttling or a busy store) or the function (500).
SECURED_PROBLEMS = (400, 401, 429, 500)
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Run once per key (kept 24 hours): the same key and body answer the first run again",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]{1,255}$"},
}
# Headers a route reads itself, beside its validated parameters.
HEADERS = {("post", "/v1/runs"): [IDEMPOTENCY_KEY], ("post", "/api/v0/tools/tasks/run"): [IDEMPOTENCY_KEY]}
# How the resolvers write a greedy path parameter (the template's {task_id+}).
GREEDY = {"/v1/tasks/.+": "/v1/tasks/{task_id}"}


def _resolver(code_uri: Path) -> APIGatewayRestResolver | None:
    """The `app` of a function's app.py, if it has one (imported under a name of its own)."""
    source = code_uri / "app.py"
    name = f"taskrun_api_{code_uri.name}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, source)
        if spec is None or spec.loader is None:
            return None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    app = getattr(sys.modules[name], "app", None)
    return app if isinstance(app, APIGatewayRestResolver) else None


def document(root: Path) -> dict[str, Any]:
    """The API document of the bundle at `root`, as JSON-ready data."""
    stack = Stack(root / "template.yaml", "us-east-1")
    code = {function.logical_id: function.code_uri for function in stack.functions()}
    routes = stack.routes()
    merge = OpenAPIMerge(
        title="taskrun",
        version=__version__,
        description=DESCRIPTION,
        tags=list(TAGS),
        security_schemes=dict(SECURITY_SCHEMES),  # type: ignore[arg-type]  # Powertools' union lists each scheme
        security=[{"ApiKey": []}, {"Bearer": []}],
        on_conflict="error",
    )
    for code_uri in sorted({code[route.function] for route in routes}):
        app = _resolver(code_uri)
        if app is not None:
            merge.add_schema(app.get_openapi_schema())  # type: ignore[arg-type]  # it takes the model as well
    merged = json.loads(merge.get_openapi_json_schema())
    paths: dict[str, Any] = {GREEDY.get(path, path): item for path, item in merged.get("paths", {}).items()}
    for greedy in set(GREEDY.values()) & set(paths):
        for operation in paths[greedy].values():
            operation.setdefault("parameters", []).insert(
                0, {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
            )
    served = {(route.method.lower(), route.path.replace("+}", "}")): route for route in routes}
    documented = {(method, path) for path, item in paths.items() for method in item}
    if missing := sorted(set(served) - documented - PAGES):
        raise ValueError(f"routes in template.yaml that no function documents: {missing}")
    if extra := sorted(documented - set(served)):
        raise ValueError(f"routes documented that template.yaml does not serve: {extra}")
    for path, item in paths.items():
        for method, operation in item.items():
            # Powertools names an operation after its function and route; the function's name is enough
            operation["operationId"] = re.sub(r"_(v1|api_v0)_.*$", "", operation["operationId"])
            operation.setdefault("parameters", []).extend(HEADERS.get((method, path), []))
            if not operation["parameters"]:
                del operation["parameters"]
            responses = operation["responses"]
            if "HTTPValidationError" in json.dumps(responses.get("422", {})):  # Powertools' own, on every route
                if "parameters" in operation or "requestBody" in operation:
                    responses["422"] = _problem(422)
                else:
                    del responses["422"]
            route = served[(method, path)]
            scope = scope_of(route.method, route.path)
            if route.authorized:
                if scope is None:
                    raise ValueError(f"{method.upper()} {path} takes a key but has no scope in access.ROUTE_SCOPES")
                # OpenAPI 3.1: the roles a scheme other than OAuth needs, as the requirement's list
                operation["security"] = [{"ApiKey": [scope]}, {"Bearer": [scope]}]
                operation["description"] = (operation.get("description", "") + f"\n\nScope: `{scope}`.").strip()
                for status in SECURED_PROBLEMS:
                    responses.setdefault(str(status), _problem(status))
            else:
                operation["security"] = []
            if "204" in responses:
                responses["204"].pop("content", None)  # No Content: no body, no media type
            operation["responses"] = dict(sorted(responses.items()))
    names = [operation["operationId"] for item in paths.values() for operation in item.values()]
    if len(names) != len(set(names)):
        raise ValueError(f"two routes' functions have one name: {sorted(names)}")
    merged["paths"] = dict(sorted(paths.items()))
    _drop_unused_schemas(merged)
    _arguments_of_each_task(merged, root)
    return merged


# Requests that name a task and give its arguments: the document says which arguments each
# of the bundle's tasks takes, as the validation does.
# (Not the compatible endpoint's: it answers arguments that do not fit with a 200 outcome.)
REQUESTS_WITH_ARGUMENTS = ("StartRunRequest", "ScheduleRequest")


def _arguments_of_each_task(doc: dict[str, Any], root: Path) -> None:
    """Constrain each request's `arguments` by its `task_id`: one branch a task of the
    bundle (its parameters' schema, its task type, its revisions), and one for any other
    id (which answers 404 or 422 as an unknown task)."""
    from taskrun.catalog.loader import load_task_dirs
    from taskrun.catalog.registry import catalog

    load_task_dirs([root / "tasks"])
    schemas = doc["components"]["schemas"]
    bundled = [definition for definition in catalog.all() if _in_bundle(definition, root)]
    branches: list[dict[str, Any]] = []
    for definition in bundled:
        info = definition.info()
        parameters = _inlined(copy.deepcopy(info.parameters), schemas, "Arguments_" + re.sub(r"\W", "_", info.task_id))
        branch: dict[str, Any] = {
            "properties": {
                "task_id": {"const": info.task_id},
                "arguments": parameters,
                "task_type": {"enum": [info.task_type.value, None]},
                "revision": {"enum": [*[revision.revision for revision in info.revisions], None]},
            },
            "required": ["task_id", *(["arguments"] if parameters.get("required") else [])],
        }
        branches.append(branch)
    others = {"properties": {"task_id": {"not": {"enum": [definition.task_id for definition in bundled]}}}}
    for name in REQUESTS_WITH_ARGUMENTS:
        schema = schemas[name]
        own = set(schema["properties"])
        schema["oneOf"] = [
            {**branch, "properties": {key: value for key, value in branch["properties"].items() if key in own}}
            for branch in branches
        ] + [others]


def _in_bundle(definition: TaskDefinition, root: Path) -> bool:
    """Whether a task is one of the bundle's own (its function in tasks/, its flow's ASL in
    tasks/ or statemachines/), not one of a `--tasks` directory loaded beside them."""
    revision = definition.latest
    if isinstance(revision, FlowRevision):
        source = revision.definition
    elif isinstance(revision, ScriptRevision | CodeFlowRevision):
        source = Path(inspect.getsourcefile(revision.function) or "")
    else:
        return False
    source = source.resolve()
    return any(source.is_relative_to((root / folder).resolve()) for folder in ("tasks", "statemachines"))


def _inlined(schema: dict[str, Any], schemas: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A task's parameters' schema with its `$defs` moved into the document's components."""

    def moved(value: Any) -> Any:
        text = re.sub(r'"#/\$defs/([^"]+)"', rf'"#/components/schemas/{prefix}_\1"', json.dumps(value))
        return json.loads(text)

    for name, definition in schema.pop("$defs", {}).items():
        schemas[f"{prefix}_{name}"] = moved(definition)
    return dict(moved(schema))


def _problem(status: int) -> dict[str, Any]:
    answer: dict[str, Any] = copy.deepcopy(dict(problem_answer(status)))
    answer["content"] = {media: {"schema": {"$ref": "#/components/schemas/Problem"}} for media in answer["content"]}
    return answer


def _drop_unused_schemas(doc: dict[str, Any]) -> None:
    """Powertools adds its own validation-error schemas to every document; the API answers
    problems instead, so schemas nothing refers to any more are left out."""
    schemas = doc.get("components", {}).get("schemas", {})
    while True:
        text = json.dumps({key: value for key, value in doc.items() if key != "components"}) + json.dumps(schemas)
        used = set(re.findall(r'"#/components/schemas/([^"]+)"', text))
        unused = [name for name in schemas if name not in used]
        if not unused:
            return
        for name in unused:
            del schemas[name]


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def write(root: Path) -> Path:
    """Write the document to the bundle's docs/openapi.json."""
    path = root / SNAPSHOT
    path.write_text(render(document(root)))
    return path
