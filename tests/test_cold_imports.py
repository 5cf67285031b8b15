"""What each Lambda handler imports at init, the bulk of its cold start: the heavy SDKs come
with the request that needs them, never with the module. Not a timing (bench/run.py
measures the milliseconds): the modules a fresh interpreter holds once the handler module
has been imported, so that a change dragging a heavy module into a handler's init fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HANDLERS = sorted(app.parent.name for app in ROOT.glob("functions/*/app.py"))

# imported by the first call that needs them, never at init
HEAVY = (
    "boto3",  # with the first AWS client (taskrun.aws): ~100 ms
    "jsonschema",  # with a run's json_schema: ~35 ms
    "referencing",
    "mcp",  # the MCP server, with the first MCP request: ~500 ms
    "mcp_types",
    "mangum",
    "starlette",
    "anyio",
    "aws_durable_execution_sdk_python",  # with the task modules, at the first call that loads the catalog
    "aws_xray_sdk",
    "jsonpath_ng",
    "httpx",
    "moto",
    "flask",
    "urllib3",  # with the first webhook delivery (taskrun.webhooks.send) or AWS client: ~25 ms
    # Powertools' other resolvers (taskrun.event_handler): AppSync's module imports asyncio and ssl
    "asyncio",
    "aws_lambda_powertools.event_handler.appsync",
    "aws_lambda_powertools.event_handler.bedrock_agent",
)
# the run service and the catalog's registry at init: only the handlers whose module declares
# a route or an event model built on them (each starts runs or runs tasks)
WITH_THE_RUN_SERVICE = {"compat_run", "runs_batch", "runs_create", "schedule_target"}
WITH_THE_REGISTRY = {"callbacks", "sweeper", "worker"} | WITH_THE_RUN_SERVICE

PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(sorted(sys.modules)))
"""


def _modules_at_init(handler: str) -> set[str]:
    env = {**os.environ, "TASKRUN_TASK_DIRS": str(ROOT / "tasks"), "POWERTOOLS_TRACE_DISABLED": "true"}
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    app = ROOT / "functions" / handler / "app.py"
    probe = subprocess.run([sys.executable, "-c", PROBE, str(app)], capture_output=True, text=True, env=env, timeout=60)
    assert probe.returncode == 0, probe.stderr
    return set(json.loads(probe.stdout))


@pytest.fixture(scope="module")
def imported() -> dict[str, set[str]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(HANDLERS, pool.map(_modules_at_init, HANDLERS), strict=True))


def _holds(modules: set[str], package: str) -> bool:
    return package in modules or any(name.startswith(package + ".") for name in modules)


@pytest.mark.parametrize("handler", HANDLERS)
def test_no_handler_imports_a_heavy_sdk_at_init(imported: dict[str, set[str]], handler: str) -> None:
    assert [package for package in HEAVY if _holds(imported[handler], package)] == []


@pytest.mark.parametrize("handler", HANDLERS)
def test_only_the_handlers_that_start_runs_import_the_run_service_at_init(
    imported: dict[str, set[str]], handler: str
) -> None:
    modules = imported[handler]
    assert ("taskrun.runs.service" in modules) == (handler in WITH_THE_RUN_SERVICE)
    assert ("taskrun.catalog.registry" in modules) <= (handler in WITH_THE_REGISTRY)


def test_the_lazy_event_handler_package_exports_what_its_init_does() -> None:
    """taskrun.event_handler stands in for Powertools' `event_handler/__init__.py`: each name
    that file imports resolves, from the module it names, through the lazy package."""
    import ast

    import aws_lambda_powertools

    init = Path(aws_lambda_powertools.__file__).parent / "event_handler" / "__init__.py"
    tree = ast.parse(init.read_text())
    prefix = "aws_lambda_powertools.event_handler."
    exported = {
        alias.name: node.module.removeprefix(prefix)
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(prefix)
        for alias in node.names
    }
    probe = """
import json, sys
import taskrun.event_handler
from taskrun.event_handler import EXPORTS
import aws_lambda_powertools.event_handler as package
assert "asyncio" not in sys.modules, "a resolver was imported before it was asked for"
import importlib
found = {
    name: getattr(package, name) is getattr(importlib.import_module(f"{package.__name__}.{module}"), name)
    for name, module in EXPORTS.items()
}
print(json.dumps({"exports": EXPORTS, "found": found, "all": package.__all__}))
"""
    answer = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert answer.returncode == 0, answer.stderr
    seen = json.loads(answer.stdout)
    assert seen["exports"] == exported
    assert sorted(seen["all"]) == sorted(exported)
    assert [name for name, same in seen["found"].items() if not same] == []


def test_the_handlers_are_the_templates_functions() -> None:
    """Every function folder is a handler held here (a new one is held to the same rules)."""
    template = (ROOT / "template.yaml").read_text()
    assert len(HANDLERS) >= 25
    assert all(f"CodeUri: functions/{handler}/" in template for handler in HANDLERS)
