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
    # the other event sources' classes (taskrun.event_handler): CodePipeline's imports zipfile
    "aws_lambda_powertools.utilities.data_classes.code_pipeline_job_event",
    "aws_lambda_powertools.utilities.data_classes.kafka_event",
    "email.policy",  # with a multipart form's request (taskrun.results.forms): its header registry, ~3 ms
    "difflib",  # with a "did you mean" for a task not found
)
# the run service and the catalog's registry at init: only the handlers whose module declares
# a route or an event model built on them (each starts runs or runs tasks)
WITH_THE_RUN_SERVICE = {"compat_run", "runs_batch", "runs_create", "schedule_target"}
WITH_THE_REGISTRY = {"callbacks", "sweeper", "worker"} | WITH_THE_RUN_SERVICE
# webhook delivery (its SSRF guard's networks, signing): only the functions that send them;
# the others check a run's or a schedule's webhook URL with the request that has one
WITH_WEBHOOK_SENDING = {"notifier", "sweeper", "webhook"}

# the modules a handler's init leaves loaded, and the taskrun models whose validators it built
PROBE = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
modules = sorted(sys.modules)
from pydantic import BaseModel
from pydantic._internal._mock_val_ser import MockValSer  # a deferred model's validator, until its first use

def subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)

built = sorted(
    {f"{model.__module__}.{model.__qualname__}" for model in subclasses(BaseModel)
     if model.__module__.startswith("taskrun.")
     and not isinstance(model.__dict__.get("__pydantic_validator__"), MockValSer)}
)
print(json.dumps({"modules": modules, "built": built}))
"""


def _init_of(handler: str) -> dict[str, list[str]]:
    env = {**os.environ, "TASKRUN_TASK_DIRS": str(ROOT / "tasks"), "POWERTOOLS_TRACE_DISABLED": "true"}
    env.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    app = ROOT / "functions" / handler / "app.py"
    probe = subprocess.run([sys.executable, "-c", PROBE, str(app)], capture_output=True, text=True, env=env, timeout=60)
    assert probe.returncode == 0, probe.stderr
    return dict(json.loads(probe.stdout))


@pytest.fixture(scope="module")
def inits() -> dict[str, dict[str, list[str]]]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(HANDLERS, pool.map(_init_of, HANDLERS), strict=True))


@pytest.fixture(scope="module")
def imported(inits: dict[str, dict[str, list[str]]]) -> dict[str, set[str]]:
    return {handler: set(init["modules"]) for handler, init in inits.items()}


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
    assert ("taskrun.webhooks.send" in modules) == (handler in WITH_WEBHOOK_SENDING)


@pytest.mark.parametrize("handler", HANDLERS)
def test_no_handler_builds_a_models_validator_at_init(inits: dict[str, dict[str, list[str]]], handler: str) -> None:
    """taskrun's models build their validators when first used (taskrun.modelbase): a model
    built at import (a nested class on pydantic's own BaseModel, say) is init time every cold
    start pays, and the first build also loads pydantic's plugin discovery."""
    assert inits[handler]["built"] == []


LAZY_PROBE = """
import importlib, json, sys
if sys.argv[1] == "lazy":
    import taskrun.event_handler
    from taskrun.event_handler import LAZY_PACKAGES, exports
    names = {package: sorted(exports(package) or ()) for package in LAZY_PACKAGES}
    loaded_before_use = sorted(name for name in sys.modules if name in HELD_BACK)
    # a submodule whose name the package also exports, imported first, leaves the name as it was
    import aws_lambda_powertools.utilities.data_classes.event_source
else:
    names = json.loads(sys.argv[2])
    loaded_before_use = []
seen = {}
for package, exported in names.items():
    module = importlib.import_module(package)
    for name in exported:
        value = getattr(module, name)
        seen[f"{package}.{name}"] = f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', repr(value))}"
print(json.dumps({"names": names, "seen": seen, "loaded_before_use": loaded_before_use}))
"""


def test_the_lazy_powertools_packages_export_what_their_init_does() -> None:
    """taskrun.event_handler stands in for two of Powertools' package `__init__`s: each name
    such a file imports is read from it, none of their heavy modules loads before it is asked
    for, and every name resolves, through the lazy package, to what the eager import gives."""
    held_back = ["asyncio", "aws_lambda_powertools.utilities.data_classes.code_pipeline_job_event"]
    probe = f"HELD_BACK = {held_back!r}\n" + LAZY_PROBE
    lazy = subprocess.run([sys.executable, "-c", probe, "lazy"], capture_output=True, text=True, timeout=60)
    assert lazy.returncode == 0, lazy.stderr
    seen_lazy = json.loads(lazy.stdout)
    assert seen_lazy["loaded_before_use"] == []
    # every package's __init__ is one the lazy package stands in for (names read from it)
    assert all(len(names) > 5 for names in seen_lazy["names"].values()), seen_lazy["names"]
    eager = subprocess.run(
        [sys.executable, "-c", probe, "eager", json.dumps(seen_lazy["names"])],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert eager.returncode == 0, eager.stderr
    assert seen_lazy["seen"] == json.loads(eager.stdout)["seen"]


def test_the_handlers_are_the_templates_functions() -> None:
    """Every function folder is a handler held here (a new one is held to the same rules)."""
    template = (ROOT / "template.yaml").read_text()
    assert len(HANDLERS) >= 25
    assert all(f"CodeUri: functions/{handler}/" in template for handler in HANDLERS)
