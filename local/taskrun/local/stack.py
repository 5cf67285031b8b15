"""The whole local stack: emulator, functions, API key and HTTP gateway, started together."""

from __future__ import annotations

import gc
import math
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from taskrun.access.keys import DynamoKeyStore, new_key
from taskrun.catalog.definitions import FlowRevision, state_machine_name
from taskrun.catalog.loader import KEPT_MODULES, ModuleProblem, load_task_dirs, task_modules
from taskrun.catalog.registry import catalog
from taskrun.flows.durable import is_durable
from taskrun.local.clock import ScheduleClock
from taskrun.local.durable import publish_versions
from taskrun.local.emulator import Emulator
from taskrun.local.gateway import READ_TIMEOUT_SECONDS, Gateway
from taskrun.local.lambdas import DEFAULT_IDLE_SECONDS
from taskrun.local.reload import Watcher, describe_task_code
from taskrun.local.server import GatewayServer, make_server
from taskrun.local.state import Narrowed, narrow_to_owner
from taskrun.local.template import Stack
from taskrun.local.throttle import Throttle
from taskrun.local.usage import restore_usage_keys
from taskrun.models import ErrorType, Run, RunError, RunStatus, utcnow
from taskrun.private import private_folder, write_private
from taskrun.runs.listing import RunFilter
from taskrun.runs.store import DynamoRunStore, Ending, end_once
from taskrun.runtime import usage_plan
from taskrun.schedules.store import ScheduleStore
from taskrun.settings import get_settings
from taskrun.webhooks.send import Signer, new_secret

DEFAULT_REGION = "us-east-1"
KEY_FILE = "api-key"
SECRET_FILE = "webhook-secret"
# started ahead of use: a first run's path (the authorizer, POST /v1/runs, the worker)
FIRST_FUNCTIONS = ["AuthorizerFunction", "StartRunFunction", "WorkerFunction"]
STOPPED_FILE = "stopped-at"  # when a graceful stop began, for the runs it cut off
SECRETS_DIR = "secrets"  # the tasks' secrets, a file each, under the data directory
_WHAT_BECOMES = {  # of a task module that does not import, whether a version that imported is kept
    True: "its tasks keep the last version that imported, and refuse new runs until it imports",
    False: "its tasks are not known until it imports",
}
INTERRUPTED = "the local stack stopped while the run was {status}; it was not resumed"


@dataclass
class CutOffRuns:
    """Runs a stop of the stack cut off, as its next start finds them (before anything there
    starts a run). A pending run was answered to its client but never taken by a worker: its
    asynchronous invoke was queued in the stack's process, and went with it. A running run's
    sandbox or execution went with it too."""

    pending: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    resumed: list[str] = field(default_factory=list)  # code-first flows': their executions go on

    @classmethod
    def find(cls, runs_table: str) -> CutOffRuns:
        store = DynamoRunStore(runs_table)
        found = cls()
        for status, run_ids in ((RunStatus.PENDING, found.pending), (RunStatus.RUNNING, found.running)):
            cursor: str | None = None
            while True:
                runs, cursor = store.list(RunFilter(status=status), 100, cursor)
                for run in runs:
                    if status is RunStatus.RUNNING and is_durable(store.get(run.run_id).execution_arn):
                        found.resumed.append(run.run_id)  # the durable engine keeps its execution
                    else:
                        run_ids.append(run.run_id)
                if cursor is None:
                    break
        return found

    def said(self, queued: int, kept: bool) -> str:
        """What a stop does to these runs (and `queued` more), in one line."""
        under_way = len(self.pending) + len(self.running) + len(self.resumed) + queued
        if not under_way:
            return "taskrun local: stopping; no run was under way"
        head = f"taskrun local: stopping with {_runs(under_way)} under way"
        if not kept:
            they = "it" if under_way == 1 else "they"
            return f"{head}; the stack keeps nothing (--ephemeral), so {they} {_verb(under_way, 'end')} with it"
        fates = [
            f"{len(self.running)} running {_verb(len(self.running), 'end')} failed at the next start"
            if self.running
            else "",
            f"{_runs(len(self.resumed), 'code-first flow')} {_verb(len(self.resumed), 'go')} on at the next start"
            if self.resumed
            else "",
            f"{len(self.pending)} not yet started {_verb(len(self.pending), 'start')} at the next start"
            if self.pending
            else "",
            f"{queued} queued {_verb(queued, 'stay')} queued" if queued else "",
        ]
        return f"{head}: " + ", ".join(fate for fate in fates if fate)

    def end_running(self, runs_table: str, stopped_at: datetime | None = None) -> int:
        """A running run cannot go on (its code may have done part of its work): each ends
        failed, saying why, at the moment the stack stopped if a graceful stop noted it (else
        now: a kill leaves no such note). Return how many."""
        store = DynamoRunStore(runs_table)
        ended = 0
        for run_id in self.running:
            error = RunError(type=ErrorType.EXECUTION_ERROR, message=INTERRUPTED.format(status=RunStatus.RUNNING))
            started_at = store.get(run_id).started_at
            at = stopped_at if stopped_at is not None and (started_at is None or stopped_at >= started_at) else utcnow()
            ended += end_once(store, run_id, Ending(RunStatus.FAILED, at, error=error, started_at=started_at))[1]
        return ended

    def dispatch_pending(self, runs_table: str) -> tuple[int, int]:
        """A pending run's code never started: each is handed over again as a new run is,
        and runs once (the worker takes a run only from pending). One whose ttl passed while
        the stack was stopped ends expired instead. Return how many of each."""
        from taskrun.runs.sweeper import expiry
        from taskrun.runtime import run_service  # made once the emulator's settings are in place

        store = DynamoRunStore(runs_table)
        dispatched = expired = 0
        for run_id in self.pending:
            run = store.get(run_id)
            now = utcnow()
            if run.status is not RunStatus.PENDING:
                continue  # taken or ended since (a cancel)
            if run.started_at is None and run.expires_at is not None and run.expires_at <= now:
                expired += end_once(store, run_id, expiry(run, now))[1]
            else:
                handed = run_service().dispatch_again(run)
                dispatched += handed.error is None or handed.error.type is not ErrorType.DISPATCH_ERROR
        return dispatched, expired


def _present_modules() -> set[str]:
    """The task modules whose files are in the tasks directories now."""
    return {name for directory in get_settings().task_dirs for name in task_modules(directory)}


def _runs(count: int, noun: str = "run") -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _verb(count: int, verb: str) -> str:
    """`verb` as said of `count` runs: `ends` of one, `end` of more."""
    return verb + ("es" if verb.endswith("o") else "s") if count == 1 else verb


def queued_runs(runs_table: str) -> list[Run]:
    """Every queued run (waiting for its start time or a slot)."""
    store = DynamoRunStore(runs_table)
    found: list[Run] = []
    cursor: str | None = None
    while True:
        runs, cursor = store.list(RunFilter(status=RunStatus.QUEUED), 100, cursor)
        found += runs
        if cursor is None:
            return found


def wake_queued_runs(runs_table: str) -> int:
    """Runs kept queued from before a restart lost their waits (the emulator keeps no
    executions): each waiting for its start time waits again (or starts at once if it has
    passed; one past its ttl ends expired when woken), and the limits runs wait for room in
    admit again, as a release of a slot would. Return how many runs were queued."""
    from taskrun.runtime import admission, waker  # made once the emulator's settings are in place

    wake = waker()
    if wake is None:
        return 0
    queued = queued_runs(runs_table)
    limits: set[str] = set()
    for run in queued:
        if run.next_attempt_at is not None:
            wake.wake_at(run)
        elif run.waiting_for is not None:
            limits.add(run.waiting_for)
    if limits and (admit := admission()) is not None:
        for limit in sorted(limits):
            admit.admit(limit)
    return len(queued)


def _state_machine_of(task_id: str) -> str:
    """The name of a flow's state machine, as the template names it (`<stack>_<task id>`)."""
    prefix = get_settings().state_machine_prefix.rpartition(":")[2]
    return prefix + state_machine_name(task_id)


def bundle_root() -> Path:
    """The folder with template.yaml: the working directory if it has one, else this checkout."""
    cwd = Path.cwd()
    if (cwd / "template.yaml").exists():
        return cwd
    return Path(__file__).resolve().parents[3]


IDLE_SETTING = "TASKRUN_LOCAL_IDLE_SECONDS"
PASSED_SETTINGS = (
    "TASKRUN_LOG_LEVEL",
    "TASKRUN_MAX_WAIT_SECONDS",
    "TASKRUN_WEBHOOK_ALLOW_PRIVATE",
    "TASKRUN_WEBHOOK_RETRY_DELAYS",
    "TASKRUN_WEBHOOK_TIMEOUT_SECONDS",
)


def resume_deliveries() -> int:
    """Webhook deliveries kept pending from before a restart lost their queue messages (the
    queue is not kept): give each a new one. Return how many."""
    from taskrun.runtime import deliveries  # made once the emulator's settings are in place

    settings = get_settings()
    if not (settings.deliveries_table and settings.webhook_queue_url):
        return 0
    return deliveries().requeue()


# the environment's settings that stand for the template's parameters in local mode
PARAMETER_SETTINGS = {
    "TASKRUN_STAGE_RATE_LIMIT": "ThrottlingRateLimit",
    "TASKRUN_STAGE_BURST_LIMIT": "ThrottlingBurstLimit",
    "TASKRUN_KEY_RATE_LIMIT": "KeyThrottlingRateLimit",
    "TASKRUN_KEY_BURST_LIMIT": "KeyThrottlingBurstLimit",
}


def default_throttle(stack: Stack) -> Throttle:
    """The stage's throttle from the template; each key's is its usage plan's."""
    stage_rate, stage_burst = stack.stage_throttle() or (math.inf, math.inf)
    return Throttle(stage_rate, stage_burst)


@dataclass
class LocalStack:
    root: Path = field(default_factory=bundle_root)
    extra_task_dirs: list[Path] = field(default_factory=list)
    api_key: str | None = None
    region: str = DEFAULT_REGION
    settings_overrides: dict[str, str] = field(default_factory=dict)
    data_dir: Path | None = None  # where the tables are kept across restarts; None keeps nothing
    webhook_secret: str | None = None  # the whsec_ key webhooks are signed with; made if not given
    throttle: Throttle | None = None  # the stage's and each key's rate; by default the template's and the settings'
    secrets: Path | None = None  # tasks' secrets: a directory or a NAME=value file; by default <data>/secrets
    idle_seconds: float | None = None  # a sandbox unused this long stops; by default TASKRUN_LOCAL_IDLE_SECONDS or 300

    def __post_init__(self) -> None:
        self._scratch: Path | None = None
        self.narrowed = Narrowed()
        if self.data_dir is not None:  # before anything is written there
            self.narrowed = narrow_to_owner(self.data_dir)
            if self.narrowed:
                print(f"taskrun local: {self.narrowed.describe(self.data_dir)}", file=sys.stderr, flush=True)
        self.stack = Stack(self.root / "template.yaml", self.region)
        for setting, parameter in PARAMETER_SETTINGS.items():
            if os.environ.get(setting) and parameter in self.stack.parameters:
                self.stack.parameters[parameter] = os.environ[setting]
        task_dirs = [self.root / "tasks", *self.extra_task_dirs]
        overrides = {
            "TASKRUN_TASK_DIRS": os.pathsep.join(str(d.resolve()) for d in task_dirs),
            "POWERTOOLS_LOG_LEVEL": os.environ.get("TASKRUN_LOG_LEVEL", "WARNING"),
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "true",  # EMF lines are for CloudWatch; locally only noise
            # settings of the local stack the functions read, from its own environment
            **{name: os.environ[name] for name in PASSED_SETTINGS if name in os.environ},
        }
        self.webhook_secret = (
            self.webhook_secret or os.environ.get("TASKRUN_WEBHOOK_SECRET") or self._kept(SECRET_FILE, new_secret)
        )
        Signer(self.webhook_secret)  # a malformed secret stops the start, with the reason
        overrides["TASKRUN_WEBHOOK_SECRET"] = self.webhook_secret
        overrides["TASKRUN_SECRETS_DIR"] = str(self.secrets_path())
        self._kept_dir = Path(tempfile.mkdtemp(prefix="taskrun-kept-"))  # the task modules' last good sources
        # the durable functions' versions: kept with the state, so a waiting flow resumes on its own
        self._versions_dir = private_folder(
            self.data_dir / "flow-versions" if self.data_dir is not None else Path(tempfile.mkdtemp(prefix="taskrun-"))
        )
        overrides[KEPT_MODULES] = str(self._kept_dir)
        self.emulator = Emulator(self.stack, {**overrides, **self.settings_overrides}, self.data_dir)
        self.emulator.runtime.idle_seconds = self.idle_seconds or idle_seconds_setting()
        self.gateway = Gateway(self.stack, self.emulator.runtime, self.throttle or default_throttle(self.stack))
        self._server: GatewayServer | None = None
        self.interrupted_runs = 0
        self.resumed_flows = 0
        self.dispatched_again = 0
        self.expired_runs = 0
        self.woken_runs = 0
        self.resumed_deliveries = 0
        self.restored_usage_keys = 0
        self._said_problems: dict[str, str] = {}  # module: the problem the stack last said of it
        self.watcher: Watcher | None = None
        self.clock: ScheduleClock | None = None

    def start(self) -> str:
        """Stand everything up; return the API key that works with every scope.

        The cyclic garbage collector is paused meanwhile (and left as it was found): the
        start makes a few million objects that live as long as the stack (botocore's and
        moto's models, moto's backends), and each of the collections they would set off
        walks all of them again, a quarter of the start. A process that only serves a
        stack freezes them afterwards (gc.freeze, as `taskrun local` does), so that no
        later collection walks them either."""
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._start()
        finally:
            if collecting:
                gc.enable()

    def _start(self) -> str:
        self.emulator.start()
        # the functions a first run goes through start their sandboxes while the rest starts
        self.emulator.runtime.warm(FIRST_FUNCTIONS)
        runs_table = get_settings().runs_table
        cut_off = CutOffRuns.find(runs_table)
        self.interrupted_runs = cut_off.end_running(runs_table, self._stopped_at())
        self.resumed_flows = len(cut_off.resumed)
        self.woken_runs = wake_queued_runs(runs_table)
        self.resumed_deliveries = resume_deliveries()
        self._create_flows_from_task_dirs()
        self._publish_flow_versions(kept=True)
        self.emulator.durable.resume()  # on the versions they started on
        self.dispatched_again, self.expired_runs = cut_off.dispatch_pending(runs_table)  # flows' machines exist now
        self.watcher = Watcher([*get_settings().task_dirs, self.root / "statemachines"], self._reload)
        self.watcher.start()
        self.emulator.durable.settle = self.watcher.settle
        settings = get_settings()
        if settings.schedules_table and settings.schedule_target_arn:
            runtime = self.emulator.runtime
            self.clock = ScheduleClock(
                runtime,
                runtime.function_name(settings.schedule_target_arn),
                ScheduleStore(settings.schedules_table),
                self.stack.declared_schedules(),
            )
            self.clock.start()
        keys = DynamoKeyStore(os.environ["TASKRUN_KEYS_TABLE"])
        plan = usage_plan()
        if plan is not None:
            self.restored_usage_keys = restore_usage_keys(keys, plan, self.stack.region)
        key, record = new_key(name="local", secret=self.api_key or self._kept(KEY_FILE, lambda: new_key()[0]))
        kept = keys.find(record.key_hash)
        if kept is not None and kept.usage_key_id and not kept.revoked:
            record = record.model_copy(update={"usage_key_id": kept.usage_key_id})
        elif plan is not None:
            record = plan.enrol(record)
        keys.put(record)
        self.api_key = key
        return key

    def secrets_path(self) -> Path:
        """Where the tasks' secrets are read: the one given, else `<data>/secrets` (a
        directory of its own for a stack that keeps nothing)."""
        if self.secrets is not None:
            return self.secrets.resolve()
        if self.data_dir is not None:
            return self.data_dir / SECRETS_DIR
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="taskrun-secrets-"))
        return self._scratch

    def _kept(self, name: str, make: Callable[[], str]) -> str:
        """A secret made at the first start; with a data directory it is kept there (owner
        only) and used again at the next start."""
        if self.data_dir is None:
            return make()
        path = private_folder(self.data_dir) / name
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        value = make()
        write_private(path, value + "\n")
        return value

    def _reload(self) -> None:
        """Task files changed: new sandboxes for every function, state machines from the
        flows' files. A module that no longer imports is kept as it last imported, its tasks
        refusing runs with its problem (taskrun.catalog.loader), and the problem is said here."""
        self.emulator.runtime.renew()
        try:
            code = describe_task_code(get_settings().task_dirs, self._kept_dir)
        except Exception as error:
            print(f"taskrun local: the tasks changed but do not load: {error}", file=sys.stderr, flush=True)
            return
        for name, (_, text) in code.sources.items():  # the last version of each that imports
            self._keep_source(name, text)
        self._forget_removed_modules()
        for task_id, definition in code.flows:
            self.emulator.put_state_machine(_state_machine_of(task_id), definition)
        self._say_problems(code.problems)
        self._publish_flow_versions()
        print("taskrun local: the tasks changed; the next runs use them", file=sys.stderr, flush=True)

    def _say_problems(self, problems: dict[str, tuple[ModuleProblem, bool]]) -> None:
        """Say each task module's problem (module: the problem, whether a version that imported
        is kept) once, until it changes, and which modules said before import again."""
        said = {name: str(problem) for name, (problem, _) in problems.items()}
        for name, (problem, kept) in problems.items():
            if self._said_problems.get(name) != str(problem):
                print(f"taskrun local: {problem}; {_WHAT_BECOMES[kept]}", file=sys.stderr, flush=True)
        present = _present_modules()
        for name in sorted(self._said_problems.keys() - said.keys() & present):  # fixed, not removed
            print(f"taskrun local: the task module {name} imports again", file=sys.stderr, flush=True)
        self._said_problems = said

    def _publish_flow_versions(self, kept: bool = False) -> None:
        publish_versions(self.emulator.runtime, self.emulator.functions, self._versions_dir, self._kept_dir, kept)

    def _create_flows_from_task_dirs(self) -> None:
        """The template's state machines exist; a flow registered in a tasks directory gets
        one too, named as the template would name it, with the template's substitutions.
        The modules' sources are kept, the last versions that imported (see _reload)."""
        loaded = set(load_task_dirs(get_settings().task_dirs, self._kept_dir))
        self._say_problems({problem.module: (problem, False) for problem in catalog.unloaded()})
        existing = {machine.name for machine in self.stack.state_machines()}
        for definition in catalog.all():
            revision = definition.latest
            name = _state_machine_of(definition.task_id)
            if isinstance(revision, FlowRevision) and name not in existing:
                self.emulator.create_state_machine(name, revision.definition, self.emulator.substitutions)
        for directory in get_settings().task_dirs:
            for module in task_modules(directory):
                if module in loaded and (directory / f"{module}.py").is_file():
                    self._keep_source(module, (directory / f"{module}.py").read_text())

    def _forget_removed_modules(self) -> None:
        """A module whose file is gone leaves no version behind: one saved again later that
        does not import is unloaded, not served as the removed one was (nor kept in the flows'
        next version)."""
        present = _present_modules()
        for kept in self._kept_dir.glob("*.py"):
            if kept.stem not in present:
                kept.unlink(missing_ok=True)

    def _keep_source(self, name: str, text: str) -> None:
        """Keep a module's source as it imported (a sandbox reading it meanwhile sees one whole)."""
        spare = self._kept_dir / f"{name}.py.new"
        spare.write_text(text)
        os.replace(spare, self._kept_dir / f"{name}.py")

    def serve(
        self, host: str, port: int, log: bool = True, read_timeout: float = READ_TIMEOUT_SECONDS
    ) -> GatewayServer:
        """Start the HTTP server on a background thread; port 0 picks a free port."""
        self._server = make_server(self.gateway, host, port, log=log, read_timeout=read_timeout)
        threading.Thread(target=self._server.serve_forever, name="gateway", daemon=True).start()
        return self._server

    def under_way(self) -> str:
        """The runs a stop now would cut off and what becomes of them, in one line."""
        runs_table = get_settings().runs_table
        return CutOffRuns.find(runs_table).said(len(queued_runs(runs_table)), kept=self.data_dir is not None)

    def _stopped_at(self) -> datetime | None:
        """When the last graceful stop began, noted in the state folder (and the note taken,
        so that a later kill is not dated by it)."""
        if self.data_dir is None:
            return None
        note = self.data_dir / STOPPED_FILE
        try:
            stopped_at = datetime.fromisoformat(note.read_text().strip())
        except (OSError, ValueError):
            return None
        finally:
            note.unlink(missing_ok=True)
        return stopped_at if stopped_at.tzinfo is not None else None

    def stop(self) -> None:
        if self.data_dir is not None and self.data_dir.is_dir():  # the runs it cuts off end at this moment
            write_private(self.data_dir / STOPPED_FILE, utcnow().isoformat() + "\n")
        if self.watcher is not None:
            self.emulator.durable.settle = None
            self.watcher.stop()
        if self.clock is not None:
            self.clock.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self.emulator.stop()
        shutil.rmtree(self._kept_dir, ignore_errors=True)


def idle_seconds_setting() -> float:
    """TASKRUN_LOCAL_IDLE_SECONDS: how long a sandbox may sit unused before it is stopped."""
    text = os.environ.get(IDLE_SETTING, "")
    if not text:
        return DEFAULT_IDLE_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds < 86_400:
        raise ValueError(f"{IDLE_SETTING} is a number of seconds above 0 and below 86400, not {text!r}")
    return seconds
