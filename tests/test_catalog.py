"""How a typed function becomes a task: its schema, its validation, its revisions."""

from __future__ import annotations

import random
from typing import Annotated

import pytest
from aws_durable_execution_sdk_python import DurableContext
from pydantic import BaseModel, Field

from taskrun.catalog.context import RunContext
from taskrun.catalog.definitions import CodeFlowRevision, ScriptRevision
from taskrun.catalog.masking import MASK, Secret
from taskrun.catalog.registry import Catalog, flow, task
from taskrun.errors import InvalidInput, TaskNotFound
from taskrun.ids import new_run_id
from taskrun.models import Run, utcnow


class Point(BaseModel):
    x: int
    y: int = 0


def make_catalog() -> Catalog:
    registry = Catalog()

    @task("geo/move", timeout=5, registry=registry)
    def move(point: Point, by: Annotated[int, Field(ge=0)] = 1, label: str | None = None) -> Point:
        """Move a point right."""
        return Point(x=point.x + by, y=point.y)

    @task("geo/tokens", registry=registry)
    def tokens(text: str, context: RunContext) -> int:
        context.report_usage(tokens=len(text))
        return len(text)

    return registry


def test_the_schema_comes_from_the_signature_and_the_return_type() -> None:
    info = make_catalog().get("geo/move").info()
    assert info.parameters["required"] == ["point"]
    assert info.parameters["properties"]["by"] == {"default": 1, "minimum": 0, "title": "By", "type": "integer"}
    assert info.output["properties"]["x"]["type"] == "integer"
    assert info.description == "Move a point right."
    assert info.timeout == 5


def test_validation_applies_defaults_and_names_each_bad_argument() -> None:
    revision = make_catalog().get("geo/move").latest
    assert revision.validate({"point": {"x": 1}}, ("body", "arguments")) == {
        "point": {"x": 1, "y": 0},
        "by": 1,
        "label": None,
    }
    with pytest.raises(InvalidInput) as invalid:
        revision.validate({"point": {"x": "a"}, "by": -1, "extra": 1}, ("body", "arguments"))
    assert sorted(e.location for e in invalid.value.errors) == [
        "body.arguments.by",
        "body.arguments.extra",
        "body.arguments.point.x",
    ]


def test_arguments_are_validated_as_their_json_schema_says_no_looser() -> None:
    revision = make_catalog().get("geo/move").latest
    for loose in ({"point": {"x": "1"}}, {"point": {"x": True}}, {"point": {"x": 1.5}}, {"point": {"x": 1}, "by": "2"}):
        with pytest.raises(InvalidInput):
            revision.validate(loose, ("body", "arguments"))
    # while JSON Schema's integers include a whole number written with a fraction
    assert revision.validate({"point": {"x": 2.0}}, ("body", "arguments"))["point"]["x"] == 2


def test_a_call_returns_json_ready_results_and_collects_usage() -> None:
    registry = make_catalog()
    context = RunContext("run_x", "geo/tokens", "1", deadline=1e12)
    tokens, move = (registry.get(task_id).latest for task_id in ("geo/tokens", "geo/move"))
    assert isinstance(tokens, ScriptRevision) and isinstance(move, ScriptRevision)
    assert tokens.call({"text": "abc"}, context) == 3
    assert context.usage == {"tokens": 3}
    assert move.call({"point": {"x": 1}, "by": 2}, context) == {"x": 3, "y": 0}


def test_revisions_follow_weights_unless_pinned() -> None:
    registry = Catalog()
    for revision, weight in (("1", 3), ("2", 1), ("3", 0)):
        task("t", revision=revision, weight=weight, registry=registry)(lambda: None)
    definition = registry.get("t")
    rng = random.Random(7)
    picks = [definition.choose_revision(None, rng).revision for _ in range(400)]
    assert set(picks) == {"1", "2"}
    assert 250 < picks.count("1") < 350
    assert definition.choose_revision("3").revision == "3"
    with pytest.raises(InvalidInput):
        definition.choose_revision("4")


def test_bad_registrations_are_refused_at_import() -> None:
    registry = Catalog()
    with pytest.raises(ValueError, match="timeout"):
        task("t", timeout=0, registry=registry)(lambda: None)
    with pytest.raises(TypeError, match="kwargs"):
        task("t", registry=registry)(lambda **kwargs: None)
    with pytest.raises(TaskNotFound):
        registry.get("t")


def test_a_catalog_s_loader_runs_at_the_first_lookup_that_needs_the_tasks_and_again_only_if_it_failed() -> None:
    registry = Catalog()
    calls: list[int] = []

    def load() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise ImportError("a module failed this time")

        @task("late/secret", timeout=5, registry=registry)
        def secret(password: Annotated[str, Secret()]) -> None:
            """Take a password."""

    registry.load_with(load)
    arguments = {"password": "p"}
    recorded = Run(run_id=new_run_id(), task_id="late/secret", revision="1", arguments=arguments, created_at=utcnow())
    # a run recorded with no secret among its arguments is shown without loading anything
    assert registry.shown(recorded.model_copy(update={"secret_arguments": False})).arguments == {"password": "p"}
    assert calls == []
    # a lookup loads; a loader that raised is tried again by the next lookup, then never again
    with pytest.raises(ImportError):
        registry.get("late/secret")
    assert registry.get("late/secret").task_id == "late/secret"
    assert "late/secret" in registry and calls == [0, 1]
    # a run recorded before the flag was kept (None) is masked by its task's parameters
    assert registry.shown(recorded).arguments == {"password": MASK}
    assert calls == [0, 1]


def test_a_code_first_flow_is_registered_from_its_signature() -> None:
    registry = Catalog()

    @flow("orders/fulfil", timeout=3600, registry=registry)
    def fulfil(context: DurableContext, order_id: str, quantity: int = 1) -> dict[str, str]:
        """Fulfil an order."""
        return {}

    definition = registry.get("orders/fulfil")
    assert definition.task_type == "flow" and definition.timeout == 3600
    assert definition.description == "Fulfil an order."
    schema = definition.latest.parameters_schema
    assert set(schema["properties"]) == {"order_id", "quantity"} and schema["required"] == ["order_id"]
    assert definition.latest.output_adapter.json_schema()["type"] == "object"
    # its first parameter must be the DurableContext: a script is a @task
    with pytest.raises(TypeError, match="first parameter is the DurableContext"):

        @flow("orders/bad", registry=registry)
        def bad(order_id: str) -> None: ...

    # a second flow or task under the same id is refused, the same function loaded again is not
    with pytest.raises(ValueError, match="registered already"):

        @flow("orders/fulfil", registry=registry)
        def other(context: DurableContext) -> None: ...

    with pytest.raises(ValueError, match="already registered as a flow"):
        task("orders/fulfil", registry=registry)(lambda: None)
    flow("orders/fulfil", timeout=60, registry=registry)(fulfil)
    assert registry.get("orders/fulfil").timeout == 60
    # a year at most, and parameters belong to an ASL flow only
    with pytest.raises(ValueError, match="a year"):
        flow("orders/long", timeout=400 * 86_400, registry=registry)(fulfil)
    with pytest.raises(TypeError, match="parameters go with a definition"):
        flow("orders/odd", parameters=BaseModel, registry=registry)


def test_a_code_first_flow_s_run_context_and_secrets_are_not_its_parameters() -> None:
    registry = Catalog()

    @flow("billing/charge", secrets=["stripe"], registry=registry)
    def charge(context: DurableContext, run: RunContext, amount: int) -> str:
        return ""

    revision = registry.get("billing/charge").latest
    assert set(revision.parameters_schema["properties"]) == {"amount"}
    assert isinstance(revision, CodeFlowRevision) and revision.secrets == ("stripe",)
    # a secret's name is checked as a task's is, and an ASL flow's scripts declare their own
    with pytest.raises(ValueError, match="secret name"):
        flow("billing/odd", secrets=["../up"], registry=registry)(charge)
    with pytest.raises(TypeError, match="secrets are for code-first flows"):
        flow("billing/asl", definition="x.asl.json", parameters=BaseModel, secrets=["stripe"], registry=registry)
