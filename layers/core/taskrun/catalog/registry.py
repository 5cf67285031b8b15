"""The catalog: every task registered by id (`@task`, `flow(...)`), found, listed within a
key's tasks, and filled by its first lookup that needs the tasks' modules."""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_type_hints

from pydantic import BaseModel, ConfigDict, TypeAdapter, create_model

from taskrun.access.scopes import EVERY_TASK, TaskAccess
from taskrun.catalog.context import DEFAULT_TIMEOUT, MAX_CONCURRENCY, MAX_TIMEOUT, F, Limit, RunContext
from taskrun.catalog.definitions import CodeFlowRevision, FlowRevision, Revision, ScriptRevision, TaskDefinition
from taskrun.catalog.secrets import check_secret_name
from taskrun.errors import FieldError, InvalidInput, TaskNotFound
from taskrun.ids import TASK_ID_PATTERN
from taskrun.models import MAX_RETRIES, Backoff, RetryPolicy, Run, Slot, TaskType
from taskrun.runs.cache import MAX_CACHE_TTL

if TYPE_CHECKING:
    from taskrun.catalog.info import TaskInfo
    from taskrun.catalog.loader import ModuleProblem

DEFAULT_FLOW_TIMEOUT = 86_400  # a code-first flow's run: a day, unless it says otherwise
MAX_FLOW_TIMEOUT = 366 * 86_400  # a durable execution lasts at most a year


def closest(name: str, names: Iterable[str]) -> list[str]:
    """The names nearest `name` (at most three), for a "did you mean" to a name not found."""
    import difflib  # only a name not found needs it

    return difflib.get_close_matches(name, list(names), n=3, cutoff=0.6)


class Catalog:
    """Tasks by id. The process-wide `catalog` below is what `@task` fills.

    A catalog may be given a loader (`load_with`: importing the task modules), run once, by
    the first lookup that needs the tasks: a function that only reads, cancels or lists runs
    whose arguments hold no secret never imports the tasks' code (nor pays for it in a cold
    start)."""

    def __init__(self) -> None:
        self._tasks: dict[str, TaskDefinition] = {}
        self._broken: dict[str, str] = {}  # task id: the problem of its module, which does not import now
        self._unloaded: dict[str, ModuleProblem] = {}  # module: why it never imported (its tasks are not known)
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

    def mark_unloaded(self, problem: ModuleProblem) -> None:
        """Local mode: a module that never imported; its tasks are not known, and a lookup
        that finds no task says so."""
        self._unloaded[problem.module] = problem

    def mark_loaded(self, module: str) -> None:
        """A module that imports (again): no longer one that did not."""
        self._unloaded.pop(module, None)

    def unloaded(self) -> list[ModuleProblem]:
        """The task modules that did not import (local mode), by name."""
        self._ready()
        return sorted(self._unloaded.values(), key=lambda problem: problem.module)

    def info(self, definition: TaskDefinition) -> TaskInfo:
        """A task as the catalog shows it, with its module's problem if it does not import now."""
        info = definition.info()
        problem = self._broken.get(definition.task_id)
        return info if problem is None else info.model_copy(update={"problem": problem})

    def check_startable(self, task_id: str) -> None:
        """InvalidInput naming the module's problem, for a task whose module does not import now."""
        problem = self._broken.get(task_id)
        if problem is not None:
            raise InvalidInput(
                f"task {task_id!r} cannot run until its module imports: {problem}",
                [FieldError("body.task_id", "its module does not import as it stands", task_id)],
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
        """A task the caller may see: one outside their key's patterns is not found, with
        what the caller may have meant."""
        tasks = self._ready()
        if task_id in tasks and access.allows(task_id):
            return tasks[task_id]
        raise TaskNotFound(task_id, self._hint(task_id, access))

    def _hint(self, task_id: str, access: TaskAccess) -> str:
        """For a task not found: the closest ids the caller may see (`did you mean ...?`), and,
        to a key that sees every task, the modules that did not import (their tasks unknown)."""
        seen = [known for known in self._tasks if access.allows(known)]
        tail = task_id.rsplit("/", 1)[-1]
        close = closest(task_id, seen)
        close += [known for known in sorted(seen) if known.rsplit("/", 1)[-1] == tail and known not in close]
        hints = [f"did you mean {' or '.join(repr(known) for known in close[:3])}?"] if close else []
        if access.everything and self._unloaded:
            problems = "; ".join(str(problem) for problem in self.unloaded())
            hints.append(f"task modules that did not import, whose tasks are not known: {problems}")
        return " ".join(hints)

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

    def add_code_flow(
        self,
        task_id: str,
        function: Callable[..., Any],
        *,
        timeout: int,
        description: str | None,
        secrets: tuple[str, ...] = (),
    ) -> None:
        _check_task_id(task_id)
        for name in secrets:
            check_secret_name(name)
        if not 1 <= timeout <= MAX_FLOW_TIMEOUT:
            raise ValueError(f"flow {task_id!r}: timeout must be 1..{MAX_FLOW_TIMEOUT} seconds (a year)")
        known = self._tasks.get(task_id)
        if known is not None:
            same = [
                revision
                for revision in known.revisions.values()
                if isinstance(revision, CodeFlowRevision) and _same_function(revision.function, function)
            ]
            if not same:
                raise ValueError(f"task {task_id!r} is registered already, by another {known.task_type}")
        revision = dataclasses.replace(_code_flow_revision(function), secrets=tuple(dict.fromkeys(secrets)))
        self._add(task_id, TaskType.FLOW, revision, timeout, description or inspect.getdoc(function) or "")

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


def _parameters(
    function: Callable[..., Any], hints: dict[str, Any], skip: Callable[[str, Any], bool]
) -> type[BaseModel]:
    """The function's parameters, but those `skip` names (a context), as a strict model."""
    fields: dict[str, Any] = {}
    for name, parameter in inspect.signature(function).parameters.items():
        annotation = hints.get(name, Any)
        if skip(name, annotation):
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"{function.__qualname__}: *args and **kwargs cannot be task parameters")
        default = ... if parameter.default is inspect.Parameter.empty else parameter.default
        fields[name] = (annotation, default)
    model_name = "".join(part.title() for part in function.__name__.split("_")) + "Arguments"
    return create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)


def _script_revision(function: Callable[..., Any], revision: str, weight: int) -> ScriptRevision:
    hints = get_type_hints(function, include_extras=True)
    context_parameter = next((name for name, kind in hints.items() if kind is RunContext), None)
    arguments_model = _parameters(function, hints, lambda name, annotation: annotation is RunContext)
    return ScriptRevision(
        revision=revision,
        weight=weight,
        function=function,
        arguments_model=arguments_model,
        output_adapter=TypeAdapter(hints.get("return", Any)),
        context_parameter=context_parameter,
        output_declared="return" in hints,
    )


def _code_flow_revision(function: Callable[..., Any]) -> CodeFlowRevision:
    """A code-first flow's function: its first parameter a DurableContext, the others the
    flow's parameters, its return type the output's."""
    from aws_durable_execution_sdk_python import DurableContext

    if not callable(function) or inspect.iscoroutinefunction(function):
        raise TypeError(f"a code-first flow is a plain function, not {function!r}")
    parameters = list(inspect.signature(function).parameters)
    try:
        hints = get_type_hints(function, include_extras=True)
    except NameError as error:  # an annotation naming what the module does not import
        raise TypeError(f"{function.__qualname__}: its annotations do not resolve: {error}") from None
    if not parameters or hints.get(parameters[0]) is not DurableContext:
        raise TypeError(
            f"{function.__qualname__}: a code-first flow's first parameter is the DurableContext "
            f"(def {function.__name__}(context: DurableContext, ...)); for a script, use @task"
        )
    context_parameter = next((name for name, kind in hints.items() if kind is RunContext), None)
    skipped = (parameters[0], context_parameter)
    return CodeFlowRevision(
        revision="1",
        weight=100,
        arguments_model=_parameters(function, hints, lambda name, annotation: name in skipped),
        output_adapter=TypeAdapter(hints.get("return", Any)),
        function=function,
        output_declared="return" in hints,
        context_parameter=context_parameter,
    )


def _same_function(one: Callable[..., Any], other: Callable[..., Any]) -> bool:
    """The same function, or its new version after its module was loaded again."""
    return (one.__module__, one.__qualname__) == (other.__module__, other.__qualname__)


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
    definition: str | Path | None = None,
    parameters: type[BaseModel] | None = None,
    output: Any = Any,
    timeout: int | None = None,
    description: str | None = None,
    secrets: Sequence[str] = (),
    registry: Catalog | None = None,
) -> Any:
    """Register a flow. Above a function (`@flow("id", timeout=...)`), a code-first flow on
    Lambda durable functions: the function's first parameter is the DurableContext, its
    others the flow's parameters (but one typed RunContext, which gets the run's context),
    its return type the output's; `secrets` names the secrets it reads with
    `RunContext.secret(name)`. With `definition`, a Step Functions state machine whose ASL
    file is `definition` (relative to the calling module) and whose input is `parameters`,
    validated first."""
    if definition is None:
        if parameters is not None:
            raise TypeError(f"flow {task_id!r}: parameters go with a definition; a code-first flow's are its own")

        def register(function: F) -> F:
            (registry or catalog).add_code_flow(
                task_id,
                function,
                timeout=timeout or DEFAULT_FLOW_TIMEOUT,
                description=description,
                secrets=tuple(secrets),
            )
            return function

        return register
    if secrets:
        raise TypeError(f"flow {task_id!r}: secrets are for code-first flows; an ASL flow's scripts declare their own")
    if parameters is None:
        raise TypeError(f"flow {task_id!r}: a flow with a definition needs its parameters")
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
