"""The task catalog: scripts registered by id, their schemas from their signatures.

A script is a typed function. Its parameters become a pydantic model (unknown arguments
are refused, absent ones take the declared default, `null` is None, `""` stays `""`), its
return type becomes the output schema. A task may have several revisions; a run picks
one by traffic weight unless the caller pins one.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import json
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, create_model
from pydantic_core import to_jsonable_python

from taskrun.access.scopes import EVERY_TASK, TaskAccess
from taskrun.catalog.masking import MASK, ValuePath, masked, revealed, secret_at, secret_values, unmasked
from taskrun.catalog.secrets import check_secret_name
from taskrun.errors import FieldError, InvalidInput, TaskNotFound
from taskrun.ids import TASK_ID_PATTERN
from taskrun.models import (
    MAX_RETRIES,
    Backoff,
    Progress,
    RetryPolicy,
    RevisionInfo,
    Run,
    Slot,
    TaskInfo,
    TaskType,
    utcnow,
)
from taskrun.results.bucket import as_json
from taskrun.runs.cache import MAX_CACHE_TTL

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_TIMEOUT = 60
MAX_TIMEOUT = 900
MAX_CONCURRENCY = 1000  # runs one limit holds at once (the limit's item lists them)


@dataclass(frozen=True)
class Limit:
    """A concurrency limit shared by name: `@task(..., concurrency=Limit("stripe", 20))` on
    several tasks lets at most 20 of their runs execute at once, all tasks together."""

    name: str
    size: int

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_.:/-]{1,64}", self.name):
            raise ValueError(f"limit name {self.name!r}: 1 to 64 letters, digits or _.:/-")


PROGRESS_SEND_SECONDS = 0.25  # a script's progress reports go to the worker at most this often


class RunContext:
    """Handed to a script that declares a parameter of this type.

    It tells the script which run it serves and how long it has left, and collects the
    usage (tokens, calls, ...) the script reports, which the run record keeps.
    """

    def __init__(
        self,
        run_id: str,
        task_id: str,
        revision: str,
        deadline: float,
        secrets: Mapping[str, str] | None = None,
        report: Callable[[Progress], None] | None = None,
    ) -> None:
        self.run_id = run_id
        self.task_id = task_id
        self.revision = revision
        self._deadline = deadline
        self._secrets = dict(secrets or {})
        self._usage: dict[str, float] = {}
        self._lock = threading.Lock()
        self._report = report  # hands a progress report on to the worker
        self._unsent: Progress | None = None
        self._sent_at = -PROGRESS_SEND_SECONDS

    def progress(self, done: float, total: float | None = None, message: str | None = None) -> None:
        """Say how far the task has come: `done` units of `total` (if known), and what it is
        doing now. The run shows the last report (`progress`) while it runs and after; reports
        come through at most every second or so, the last one always."""
        try:
            report = Progress.reported(done, total, message, utcnow())
        except ValidationError as invalid:
            problems = "; ".join(f"{'.'.join(map(str, error['loc']))}: {error['msg']}" for error in invalid.errors())
            raise ValueError(f"progress({done!r}, {total!r}): {problems}") from None
        with self._lock:
            self._unsent = report
            if time.monotonic() - self._sent_at >= PROGRESS_SEND_SECONDS:
                self._send()

    def close(self) -> None:
        """As the call ends: hand on the last report, if it has not gone yet, and none after."""
        with self._lock:
            self._send()
            self._report = None

    def _send(self) -> None:
        if self._unsent is not None and self._report is not None:
            self._report(self._unsent)
            self._unsent, self._sent_at = None, time.monotonic()

    def remaining_seconds(self) -> float:
        return max(0.0, self._deadline - time.monotonic())

    def secret(self, name: str) -> str:
        """The value of a secret the task declared (`@task(secrets=[...])`); it is masked in
        the run's logs. A secret the task did not declare is a KeyError."""
        if name not in self._secrets:
            raise KeyError(f"secret {name!r} is not one the task declares (@task(secrets=[...]))")
        return self._secrets[name]

    def report_usage(self, **amounts: float) -> None:
        """Add to the run's usage counters, for example `report_usage(input_tokens=120)`."""
        with self._lock:
            for name, amount in amounts.items():
                self._usage[name] = self._usage.get(name, 0) + amount

    @property
    def usage(self) -> dict[str, float]:
        with self._lock:
            return dict(self._usage)


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


class Catalog:
    """Tasks by id. The process-wide `catalog` below is what `@task` fills.

    A catalog may be given a loader (`load_with`: importing the task modules), run once, by
    the first lookup that needs the tasks: a function that only reads, cancels or lists runs
    whose arguments hold no secret never imports the tasks' code (nor pays for it in a cold
    start)."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskDefinition] = {}
        self._broken: dict[str, str] = {}  # task id: the problem of its module, which does not import now
        self._limits: dict[str, int] = {}  # shared limits by name, and their size
        self._loader: Callable[[], object] | None = None
        self._loading = False
        self._load_lock = threading.RLock()

    def load_with(self, loader: Callable[[], object]) -> None:
        """Fill the catalog by `loader()` on the first lookup (a loader that raises is tried
        again by the next one)."""
        self._loader = loader

    def _ready(self) -> dict[str, TaskDefinition]:
        """The tasks, their modules imported first if a loader is still to run. A lookup the
        loader itself makes (while it registers tasks) sees what is registered so far."""
        if self._loader is not None:
            with self._load_lock:
                loader = self._loader
                if loader is not None and not self._loading:
                    self._loading = True
                    try:
                        loader()
                        self._loader = None
                    finally:
                        self._loading = False
        return self._tasks

    def get(self, task_id: str) -> TaskDefinition:
        try:
            return self._ready()[task_id]
        except KeyError:
            raise TaskNotFound(task_id) from None

    def task_ids(self) -> set[str]:
        return set(self._ready())

    def forget(self, task_ids: Iterable[str]) -> None:
        """Drop tasks a module registered before it failed to import."""
        for task_id in task_ids:
            self._tasks.pop(task_id, None)

    def mark_broken(self, task_ids: Iterable[str], problem: str) -> None:
        """Local mode: these tasks' module no longer imports (`problem` names its file and
        line); they are served as they last imported, but no run of them starts."""
        for task_id in task_ids:
            self._broken[task_id] = problem

    def check_startable(self, task_id: str) -> None:
        """InvalidInput naming the module's problem, for a task whose module does not import now."""
        problem = self._broken.get(task_id)
        if problem is not None:
            raise InvalidInput(
                f"task {task_id!r} cannot run: its module does not import as it stands ({problem})",
                [FieldError("body.task_id", f"its module does not import: {problem}", task_id)],
            )

    def all(self, access: TaskAccess = EVERY_TASK) -> list[TaskDefinition]:
        """The tasks the caller may see, by id."""
        shown = [definition for definition in self._ready().values() if access.allows(definition.task_id)]
        return sorted(shown, key=lambda definition: definition.task_id)

    def shown(self, run: Run) -> Run:
        """A run as taskrun shows it: its secret arguments masked. A run recorded with no
        secret among its arguments is shown as it is, without the tasks' code."""
        if not run.arguments or run.secret_arguments is False:
            return run
        definition = self._ready().get(run.task_id)
        revision = definition.revisions.get(run.revision) if definition else None
        if revision is None or not run.arguments:
            return run
        return run.model_copy(update={"arguments": revision.masked(run.arguments)})

    def visible(self, task_id: str, access: TaskAccess) -> TaskDefinition:
        """A task the caller may see: one outside their key's patterns is not found."""
        if not access.allows(task_id):
            raise TaskNotFound(task_id)
        return self.get(task_id)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._ready()

    def add_script(
        self,
        task_id: str,
        function: Callable[..., Any],
        *,
        timeout: int,
        revision: str,
        weight: int,
        description: str | None,
        cache_ttl: int | None = None,
        retries: int = 0,
        backoff: Backoff | None = None,
        final: tuple[type[BaseException], ...] = (),
        concurrency: int | Limit | None = None,
        per_key: int | None = None,
        secrets: tuple[str, ...] = (),
    ) -> None:
        _check_task_id(task_id)
        for name in secrets:
            check_secret_name(name)
        if not 0 <= retries <= MAX_RETRIES:
            raise ValueError(f"task {task_id!r}: retries must be 0..{MAX_RETRIES}")
        if not all(isinstance(kind, type) and issubclass(kind, BaseException) for kind in final):
            raise ValueError(f"task {task_id!r}: final must name exception types")
        if cache_ttl is not None and not 1 <= cache_ttl <= MAX_CACHE_TTL:
            raise ValueError(f"task {task_id!r}: cache_ttl must be 1..{MAX_CACHE_TTL} seconds")
        if not 1 <= timeout <= MAX_TIMEOUT:
            raise ValueError(f"task {task_id!r}: timeout must be 1..{MAX_TIMEOUT} seconds")
        if weight < 0:
            raise ValueError(f"task {task_id!r}: weight must not be negative")
        script = dataclasses.replace(
            _script_revision(function, revision, weight), final=tuple(final), secrets=tuple(dict.fromkeys(secrets))
        )
        self._add(task_id, TaskType.SCRIPT, script, timeout, description or inspect.getdoc(function) or "")
        self._tasks[task_id].cache_ttl = cache_ttl
        self._tasks[task_id].retry = RetryPolicy(retries=retries, backoff=backoff or Backoff()) if retries else None
        self._tasks[task_id].limit = self._limit_of(task_id, concurrency)
        if per_key is not None and not 1 <= per_key <= MAX_CONCURRENCY:
            raise ValueError(f"task {task_id!r}: per_key must be 1..{MAX_CONCURRENCY}")
        self._tasks[task_id].per_key = per_key

    def _limit_of(self, task_id: str, concurrency: int | Limit | None) -> Slot | None:
        """The limit a task runs within: its own (`concurrency=N`) or a shared one (a `Limit`,
        whose size every task naming it must agree on)."""
        if concurrency is None:
            return None
        if isinstance(concurrency, Limit):
            slot = Slot(name=f"limit:{concurrency.name}", size=concurrency.size)
            known = self._limits.setdefault(slot.name, slot.size)
            if known != slot.size:
                raise ValueError(f"limit {concurrency.name!r} is {known} wide elsewhere, {slot.size} here")
        else:
            slot = Slot(name=f"task:{task_id}", size=concurrency)
        if not 1 <= slot.size <= MAX_CONCURRENCY:
            raise ValueError(f"task {task_id!r}: concurrency must be 1..{MAX_CONCURRENCY}")
        return slot

    def add_flow(
        self,
        task_id: str,
        definition: Path,
        parameters: type[BaseModel],
        *,
        output: Any,
        timeout: int | None,
        description: str | None,
    ) -> None:
        _check_task_id(task_id)
        strict = create_model(parameters.__name__, __base__=parameters)
        strict.model_config["extra"] = "forbid"  # unknown arguments are refused, as for scripts
        strict.model_rebuild(force=True)
        revision = FlowRevision(
            revision="1",
            weight=100,
            arguments_model=strict,
            output_adapter=TypeAdapter(output),
            definition=definition,
        )
        self._add(task_id, TaskType.FLOW, revision, timeout, description or inspect.getdoc(parameters) or "")

    def _add(
        self, task_id: str, task_type: TaskType, revision: Revision, timeout: int | None, description: str
    ) -> None:
        definition = self._tasks.get(task_id)
        if definition is None:
            definition = TaskDefinition(task_id=task_id, task_type=task_type, description=description, timeout=timeout)
            self._tasks[task_id] = definition
        elif definition.task_type is not task_type:
            raise ValueError(f"task {task_id!r} is already registered as a {definition.task_type}")
        definition.revisions[revision.revision] = revision
        if revision is definition.latest:
            definition.timeout = timeout
            definition.description = description or definition.description


def _check_task_id(task_id: str) -> None:
    if not re.match(TASK_ID_PATTERN, task_id):
        raise ValueError(f"task id {task_id!r} must be path segments of letters, digits, '_', '.', '-'")


def _script_revision(function: Callable[..., Any], revision: str, weight: int) -> ScriptRevision:
    hints = get_type_hints(function, include_extras=True)
    fields: dict[str, Any] = {}
    context_parameter = None
    for name, parameter in inspect.signature(function).parameters.items():
        annotation = hints.get(name, Any)
        if annotation is RunContext:
            context_parameter = name
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"{function.__qualname__}: *args and **kwargs cannot be task parameters")
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[name] = (annotation, default)
    model_name = "".join(part.title() for part in function.__name__.split("_")) + "Arguments"
    arguments_model = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
    return ScriptRevision(
        revision=revision,
        weight=weight,
        function=function,
        arguments_model=arguments_model,
        output_adapter=TypeAdapter(hints.get("return", Any)),
        context_parameter=context_parameter,
        output_declared="return" in hints,
    )


catalog = Catalog()


def task(
    task_id: str,
    *,
    timeout: int = DEFAULT_TIMEOUT,
    revision: str = "1",
    weight: int = 100,
    description: str | None = None,
    cache_ttl: int | None = None,
    retries: int = 0,
    backoff: Backoff | None = None,
    final: tuple[type[BaseException], ...] = (),
    concurrency: int | Limit | None = None,
    per_key: int | None = None,
    secrets: Sequence[str] = (),
    registry: Catalog | None = None,
) -> Callable[[F], F]:
    """Register a function as the script `task_id` (one revision of it). With `cache_ttl`
    (seconds), a run identical to one that succeeded that recently answers with its result.
    With `retries`, a run that raised or timed out is tried again that many times at most,
    after the `backoff`'s waits; an exception of a `final` type ends the run at once.
    With `concurrency` (a number, or a `Limit` shared by name with other tasks), at most that
    many runs execute at once; with `per_key`, at most that many of one `concurrency_key`.
    The others wait, queued, and start in arrival order. `secrets` names the secrets the
    task reads with `RunContext.secret(name)`; a run whose secret is not set fails before
    the function starts."""

    def register(function: F) -> F:
        (registry or catalog).add_script(
            task_id,
            function,
            timeout=timeout,
            revision=revision,
            weight=weight,
            description=description,
            cache_ttl=cache_ttl,
            retries=retries,
            backoff=backoff,
            final=final,
            concurrency=concurrency,
            per_key=per_key,
            secrets=tuple(secrets),
        )
        return function

    return register


def flow(
    task_id: str,
    *,
    definition: str | Path,
    parameters: type[BaseModel],
    output: Any = Any,
    timeout: int | None = None,
    description: str | None = None,
    registry: Catalog | None = None,
) -> None:
    """Register a flow: a Step Functions state machine whose ASL file is `definition`
    (relative to the calling module) and whose input is `parameters`, validated first."""
    caller = sys._getframe(1).f_globals.get("__file__")
    base = Path(caller).parent if caller else Path.cwd()
    (registry or catalog).add_flow(
        task_id,
        (base / definition).resolve(),
        parameters,
        output=output,
        timeout=timeout,
        description=description,
    )
