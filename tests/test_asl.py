"""Checks of every flow's ASL that cfn-lint does not make: targets, substitutions, scripts."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskrun.catalog.definitions import FlowRevision, ScriptRevision, state_machine_name
from taskrun.local.stack import LocalStack
from taskrun.local.template import Stack
from taskrun.runtime import task_catalog
from tests.conftest import ROOT

TEMPLATE = Stack(ROOT / "template.yaml", "us-east-1")


def asl_files(stack: LocalStack) -> dict[Path, dict[str, str]]:
    """Every flow's ASL file with the substitutions it gets: the template's own state
    machines, and the flows of the tasks directories (which get the template's)."""
    files = {machine.definition.resolve(): machine.substitutions for machine in TEMPLATE.state_machines()}
    for definition in task_catalog().all():
        revision = definition.latest
        if isinstance(revision, FlowRevision):
            files.setdefault(revision.definition, stack.emulator.substitutions)
    return files


def state_lists(machine: dict[str, Any], where: str = "") -> Iterator[tuple[str, dict[str, Any], str]]:
    """Each list of states (the top level, every Map's processor, every Parallel's branch)."""
    yield where or "top level", machine["States"], machine["StartAt"]
    for name, state in machine["States"].items():
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from state_lists(processor, f"{where}{name} (Map)/")
        for index, branch in enumerate(state.get("Branches", [])):
            yield from state_lists(branch, f"{where}{name} branch {index}/")


def targets(state: dict[str, Any]) -> Iterator[str]:
    if "Next" in state:
        yield state["Next"]
    if "Default" in state:
        yield state["Default"]
    for choice in state.get("Choices", []):
        yield choice["Next"]
    for catcher in state.get("Catch", []):
        yield catcher["Next"]


def payloads(machine: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for _, states, _ in state_lists(machine):
        for state in states.values():
            payload = state.get("Parameters", {}).get("Payload")
            if isinstance(payload, dict):
                yield payload


@pytest.fixture(scope="module")
def flows(stack: LocalStack) -> dict[Path, tuple[dict[str, Any], dict[str, str]]]:
    return {path: (json.loads(path.read_text()), subs) for path, subs in asl_files(stack).items()}


def test_every_next_default_and_catch_target_exists(flows: dict[Path, tuple[dict[str, Any], dict[str, str]]]) -> None:
    for path, (machine, _) in flows.items():
        for where, states, start in state_lists(machine):
            assert start in states, f"{path.name} {where}: StartAt {start!r} is not a state"
            for name, state in states.items():
                for target in targets(state):
                    assert target in states, f"{path.name} {where}{name}: {target!r} is not a state"
                ends = state.get("End") or state["Type"] in ("Choice", "Succeed", "Fail")
                assert ends or "Next" in state, f"{path.name} {where}{name}: neither Next nor End"


def test_every_substitution_is_defined(flows: dict[Path, tuple[dict[str, Any], dict[str, str]]]) -> None:
    for path, (_, substitutions) in flows.items():
        used = set(re.findall(r"\$\{([^}]+)\}", path.read_text()))
        assert used <= set(substitutions), f"{path.name}: undefined {sorted(used - set(substitutions))}"


def test_every_script_a_flow_names_is_in_the_catalog(flows: dict[Path, tuple[dict[str, Any], dict[str, str]]]) -> None:
    catalog = task_catalog()
    for path, (machine, _) in flows.items():
        for payload in payloads(machine):
            task_id = payload.get("task_id")
            if task_id is None:
                continue
            assert task_id in catalog, f"{path.name}: no task {task_id!r}"
            assert isinstance(catalog.get(task_id).latest, ScriptRevision), f"{path.name}: {task_id!r} is no script"


def test_every_bundle_flow_has_its_state_machine_in_the_template() -> None:
    """A flow whose ASL is in statemachines/ is deployed by template.yaml, under the name
    its dispatcher computes from the task id."""
    # the flows' machines (the wake machine, `<stack>-wake`, is taskrun's own and runs no task)
    machines = {machine.name: machine for machine in TEMPLATE.state_machines() if "_" in machine.name}
    bundled = [
        definition
        for definition in task_catalog().all()
        if isinstance(definition.latest, FlowRevision)
        and definition.latest.definition.parent == (ROOT / "statemachines").resolve()
    ]
    assert len(bundled) == len(machines)
    for definition in bundled:
        assert isinstance(definition.latest, FlowRevision)
        name = "taskrun-local_" + state_machine_name(definition.task_id)
        assert name in machines, f"{definition.task_id}: no state machine named {name} in template.yaml"
        assert machines[name].definition.resolve() == definition.latest.definition, definition.task_id


LAMBDA_TRANSIENT = {"Lambda.ServiceException", "Lambda.SdkClientException", "Lambda.TooManyRequestsException"}


def test_every_lambda_step_of_the_bundles_flows_retries_lambdas_transient_errors() -> None:
    def task_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        for name, state in states.items():
            if state["Type"] == "Task" and ":states:::lambda:invoke" in state["Resource"]:
                yield name, state
            for nested in [state.get("ItemProcessor") or state.get("Iterator"), *state.get("Branches", [])]:
                if nested:
                    yield from task_states(nested["States"])

    for path in sorted((ROOT / "statemachines").glob("*.asl.json")):
        definition = json.loads(path.read_text())
        found = list(task_states(definition["States"]))
        assert found, path.name
        for name, state in found:
            covered = {error for retrier in state.get("Retry", []) for error in retrier["ErrorEquals"]}
            assert covered >= LAMBDA_TRANSIENT, f"{path.name}: {name} lacks the Lambda retrier"
