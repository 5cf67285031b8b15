"""template.yaml is the one source of routes and resources: check it agrees with the code."""

from __future__ import annotations

import fnmatch
import json
import re

from taskrun.local.stack import LocalStack
from taskrun.local.template import Stack
from tests.conftest import API_KEY, EVENTS, ROOT


def test_every_route_in_the_template_reaches_a_handler_route(stack: LocalStack) -> None:
    for route in stack.stack.routes():
        path = re.sub(r"\{[^}]+\+\}", "examples/greet", route.path)
        path = re.sub(r"\{[^}]+\}", "run_00000000000000000000000000", path)
        response = stack.gateway.handle(
            route.method, path, {"X-API-KEY": API_KEY, "Content-Type": "application/json"}, b"{}"
        )
        assert response.status < 500, (route.path, response.body)
        if response.status == 404:
            assert not json.loads(response.body)["detail"].startswith("no route"), route.path


def test_every_function_has_its_code_and_a_sample_event() -> None:
    stack = Stack(ROOT / "template.yaml", "us-east-1")
    event_names = {path.stem for path in EVENTS.glob("*.json")}
    for function in stack.functions():
        assert (function.code_uri / "app.py").exists(), function.logical_id
        folder = function.code_uri.name
        assert any(name == folder or name.startswith(folder + "_") for name in event_names), folder
        for name in function.environment:
            assert name.startswith(("TASKRUN_", "POWERTOOLS_")), name


def test_api_functions_wait_no_longer_than_their_lambda_timeout() -> None:
    stack = Stack(ROOT / "template.yaml", "us-east-1")
    max_wait = float(stack.parameters["MaxWaitSeconds"])
    for function in stack.functions():
        if "TASKRUN_WORKER_FUNCTION" in function.environment or function.logical_id == "GetRunFunction":
            assert function.timeout > max_wait, function.logical_id


def test_a_stack_reaches_none_of_the_flows_of_a_stack_whose_name_it_prefixes() -> None:
    """`taskrun` and `taskrun-prod` side by side: no policy or event pattern of the first
    matches a state machine or execution of the second (nor the other way round)."""
    dev, prod = (Stack(ROOT / "template.yaml", "us-east-1", name) for name in ("taskrun", "taskrun-prod"))

    def patterns(stack: Stack) -> list[str]:
        found: list[str] = []

        def walk(value: object) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    if key == "prefix" and isinstance(item, str):
                        found.append(item + "*")
                    walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)
            elif isinstance(value, str) and ":states:" in value:
                found.append(value)

        walk(stack.resolve(stack.resources))
        walk(stack.resolve(stack.document["Globals"]))
        return found

    def flows(stack: Stack) -> list[str]:
        machines = [f"arn:aws:states:us-east-1:123456789012:stateMachine:{m.name}" for m in stack.state_machines()]
        return machines + [arn.replace(":stateMachine:", ":execution:") + ":run_1" for arn in machines]

    for mine, theirs in ((dev, prod), (prod, dev)):
        own = patterns(mine)
        assert any(fnmatch.fnmatchcase(arn, pattern) for arn in flows(mine) for pattern in own)
        for pattern in own:
            for arn in flows(theirs):
                assert not fnmatch.fnmatchcase(arn, pattern), (mine.stack_name, pattern, arn)
