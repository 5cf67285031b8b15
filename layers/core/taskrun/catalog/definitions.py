"""A task's definition: its revisions (a script or a flow), their schemas from their
signatures, validation, and the revision a run picks.

A script is a typed function. Its parameters become a pydantic model (unknown arguments
are refused, absent ones take the declared default, `null` is None, `""` stays `""`), its
return type becomes the output schema. A task may have several revisions; a run picks
one by traffic weight unless the caller pins one.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from taskrun.catalog.context import RunContext
from taskrun.catalog.info import RevisionInfo, TaskInfo
from taskrun.catalog.masking import MASK, ValuePath, masked, revealed, secret_at, secret_values, unmasked
from taskrun.errors import FieldError, InvalidInput
from taskrun.models import RetryPolicy, Slot, TaskType
from taskrun.results.bucket import as_json


@dataclass(frozen=True)
class Revision:
    """One revision of a task: what its arguments and output look like."""

    revision: str
    weight: int
    arguments_model: type[BaseModel]
    output_adapter: TypeAdapter[Any]

    @functools.cached_property
    def parameters_schema(self) -> dict[str, Any]:
        return self.arguments_model.model_json_schema()

    def validate(self, arguments: Mapping[str, Any], location: tuple[str, ...]) -> dict[str, Any]:
        """The arguments with defaults applied, as JSON-ready values (secrets as their text);
        InvalidInput names each bad one, a secret's value masked."""
        try:
            # as JSON, strictly: what the parameters' JSON Schema allows, no more (no "5" for
            # an integer, no true for a number), with JSON's own forms of dates, enums and ids
            # (JSON Schema counts 454.0 an integer, pydantic's strict mode does not: such a
            # number is handed over as 454, which a float parameter takes as well)
            parsed = self.arguments_model.model_validate_json(json.dumps(_integral(dict(arguments))), strict=True)
        except ValidationError as error:
            errors = [_field_error(item, location) for item in error.errors()]
            for at, item in enumerate(error.errors()):
                if secret_at(item["loc"], self.parameters_schema):
                    errors[at] = dataclasses.replace(errors[at], value=MASK)
            raise InvalidInput("the arguments do not match the task's parameters", errors) from error
        return dict(to_jsonable_python(revealed(parsed.model_dump())))

    def masked(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments as taskrun shows them: each secret's value masked."""
        return dict(masked(dict(arguments), self.parameters_schema))

    def unmasked(
        self, arguments: Mapping[str, Any], saved: Mapping[str, Any]
    ) -> tuple[dict[str, Any], list[ValuePath]]:
        """The arguments with each secret sent back masked replaced by its saved value; and
        where a mask stands with no saved value."""
        restored, unmatched = unmasked(dict(arguments), dict(saved), self.parameters_schema)
        return dict(restored), unmatched

    def secrets_in(self, arguments: Mapping[str, Any]) -> list[str]:
        """The texts of the secrets among the arguments, to scrub from logs and messages."""
        return secret_values(dict(arguments), self.parameters_schema)


@dataclass(frozen=True)
class ScriptRevision(Revision):
    function: Callable[..., Any]
    context_parameter: str | None
    output_declared: bool = True  # the function has a return annotation
    final: tuple[type[BaseException], ...] = ()  # exceptions that end a run without a retry
    secrets: tuple[str, ...] = ()  # the names of the secrets it reads (RunContext.secret)

    def call(self, arguments: Mapping[str, Any], context: RunContext) -> Any:
        """Run the function on arguments already validated once, and return a JSON-ready result."""
        parsed = self.arguments_model.model_validate(dict(arguments))
        kwargs = {name: getattr(parsed, name) for name in type(parsed).model_fields}
        if self.context_parameter:
            kwargs[self.context_parameter] = context
        return as_json(self.function(**kwargs), self.output_adapter, self.output_declared)


@dataclass(frozen=True)
class FlowRevision(Revision):
    definition: Path  # the ASL file of the flow's state machine


@dataclass(frozen=True)
class CodeFlowRevision(Revision):
    """A code-first flow: a function the flow function runs under the durable execution SDK,
    its first parameter the execution's DurableContext."""

    function: Callable[..., Any]
    output_declared: bool = True
    context_parameter: str | None = None  # the parameter typed RunContext, if any
    secrets: tuple[str, ...] = ()  # the names of the secrets it reads (RunContext.secret)

    def call(self, arguments: Mapping[str, Any], context: Any, run: RunContext | None = None) -> Any:
        """Run the flow's function on validated arguments; its return value as JSON."""
        parsed = self.arguments_model.model_validate(dict(arguments))
        kwargs = {name: getattr(parsed, name) for name in type(parsed).model_fields}
        if self.context_parameter:
            kwargs[self.context_parameter] = run
        return as_json(self.function(context, **kwargs), self.output_adapter, self.output_declared)


def state_machine_name(task_id: str) -> str:
    """The flow's state machine is named `<stack>_<task id with / as ->` (template.yaml does the same)."""
    return task_id.replace("/", "-")


def _integral(value: Any) -> Any:
    """`value` with each float that is a whole number (454.0) as an int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


def _field_error(item: Any, location: tuple[str, ...]) -> FieldError:
    path = ".".join(str(part) for part in (*location, *item["loc"]))
    value = None if item["type"] == "missing" else item.get("input")
    return FieldError(location=path, message=item["msg"], value=to_jsonable_python(value, fallback=repr))


@dataclass
class TaskDefinition:
    task_id: str
    task_type: TaskType
    description: str
    timeout: int | None
    revisions: dict[str, Revision] = field(default_factory=dict)
    cache_ttl: int | None = None  # seconds a succeeded run's result answers identical runs
    retry: RetryPolicy | None = None  # how a failed run is tried again
    limit: Slot | None = None  # at most `size` runs at once, of this task or of every task sharing the name
    per_key: int | None = None  # at most this many runs of one concurrency_key at once

    def slots_for(self, concurrency_key: str | None) -> list[Slot]:
        """The limits a run of this task with this key executes within (none: unlimited)."""
        primary = self.limit.name if self.limit else f"task:{self.task_id}"
        slots = [self.limit] if self.limit else []
        if self.per_key is not None and concurrency_key is not None:
            slots.append(Slot(name=f"{primary}#key:{concurrency_key}", size=self.per_key))
        return slots

    @property
    def latest(self) -> Revision:
        return self.revisions[max(self.revisions, key=_revision_order)]

    def choose_revision(self, pinned: str | None, rng: random.Random | None = None) -> Revision:
        if pinned is not None:
            if pinned not in self.revisions:
                known = ", ".join(sorted(self.revisions, key=_revision_order))
                raise InvalidInput(
                    f"task {self.task_id!r} has no revision {pinned!r} (it has {known})",
                    [FieldError("body.revision", f"unknown revision; known: {known}", pinned)],
                )
            return self.revisions[pinned]
        live = [candidate for candidate in self.revisions.values() if candidate.weight > 0]
        if not live:
            return self.latest
        return (rng or random).choices(live, weights=[candidate.weight for candidate in live])[0]

    def masked(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Arguments kept for no one revision (a schedule's) as taskrun shows them: each part
        any revision's parameters call secret masked."""
        shown = dict(arguments)
        for revision in self.revisions.values():
            shown = revision.masked(shown)
        return shown

    def unmasked(self, arguments: Mapping[str, Any], saved: Mapping[str, Any]) -> dict[str, Any]:
        """Arguments sent back as a client was shown them (a schedule's, read and changed): each
        secret that reads MASK keeps its saved value. A mask with no saved value to stand for
        is InvalidInput: it is the mask's text, not a secret to hand a task."""
        restored, unmatched = dict(arguments), set()
        for revision in self.revisions.values():
            restored, found = revision.unmasked(restored, saved)
            unmatched.update(found)
        if unmatched:
            raise InvalidInput(
                f"{MASK} stands for a secret's saved value, and there is none here: send the value itself",
                [
                    FieldError(
                        ".".join(("body", "arguments", *map(str, path))), "a mask with no saved value behind it", MASK
                    )
                    for path in sorted(unmatched, key=str)
                ],
            )
        return restored

    def info(self) -> TaskInfo:
        latest = self.latest
        return TaskInfo(
            task_id=self.task_id,
            task_type=self.task_type,
            description=self.description,
            parameters=latest.arguments_model.model_json_schema(),
            output=latest.output_adapter.json_schema(),
            timeout=self.timeout,
            cache_ttl=self.cache_ttl,
            retry=self.retry,
            concurrency=self.limit.size if self.limit else None,
            concurrency_limit=self.limit.name.removeprefix("limit:")
            if self.limit and self.limit.name[:6] == "limit:"
            else None,
            per_key=self.per_key,
            revisions=[
                RevisionInfo(revision=rev.revision, weight=rev.weight)
                for rev in sorted(self.revisions.values(), key=lambda r: _revision_order(r.revision))
            ],
        )


def _shared_name(limit: Slot | None) -> str | None:
    """The name of a shared limit (`limit:<name>`); None for a task's own."""
    return limit.name.removeprefix("limit:") if limit is not None and limit.name.startswith("limit:") else None


def _revision_order(revision: str) -> tuple[int, str]:
    return (int(revision), "") if revision.isdigit() else (1 << 62, revision)
