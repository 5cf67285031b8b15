"""One local stack for the whole session: the real template, handlers and tasks on moto.

Fake credentials are set before anything imports boto3, so nothing can reach AWS.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POWERTOOLS_SERVICE_NAME": "taskrun",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_DISABLED": "true",
    }
)

from taskrun.local.stack import LocalStack
from taskrun.local.throttle import Throttle
from tests.receiver import Receiver

ROOT = Path(__file__).resolve().parents[1]
EVENTS = ROOT / "events"
API_KEY = "test-key-0123456789"
USER_TASKS = Path(__file__).parent / "user_tasks"

# Short enough that the tests that wait past a limit stay quick.
COMPAT_WAIT_SECONDS = 3
READ_TIMEOUT_SECONDS = 2
WEBHOOK_RETRY_DELAYS = "1,1,1"  # four attempts a second apart, not over a day
WEBHOOK_TIMEOUT_SECONDS = 1.5
KEY_CACHE_SECONDS = 2  # how long the authorizer keeps a valid key (60 s by default)
# The suite sends bursts no client would (the tests that throttle set their own limits).
GENEROUS = Throttle(stage_rate=10_000, stage_burst=10_000, key_rate=10_000, key_burst=10_000)
# The functions that check webhook URLs (when a run or schedule is made, and at delivery).
WEBHOOK_CHECKERS = [
    "StartRunFunction",
    "CompatRunFunction",
    "RunTaskFunction",
    "SchedulesFunction",
    "ScheduleTargetFunction",
    "WebhookFunction",
]

# The modules that take longest, longest first. Two workers take whole modules in the order
# collected (pyproject: --dist loadfile --no-loadscope-reorder): starting with these lets
# the many short modules fill in beside them, rather than one long module running last alone.
# The listing tests come first of all: they read every run of the worker's stack, so they
# are quickest before the others have made thousands.
LONGEST_FIRST = (
    "test_listing.py",
    "test_fuzz.py",
    "test_concurrency.py",
    "test_faults.py",
    "test_cli.py",
    "test_local_state.py",
    "test_load.py",
    "test_packaging.py",
    "test_retry_faults.py",
    "test_run_control.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: each module's tests keep their order


LIVE_TASK = """
from taskrun import task


@task("live/version", timeout=5)
def version() -> str:
    return "one"
"""


NEEDS_DEPENDENCY = """from taskrun import task
import requestz


@task("live/needsdep")
def needsdep() -> str:
    return "never"
"""


@contextlib.contextmanager
def modules_that_do_not_import(api: httpx.Client, live_tasks: Path) -> Iterator[None]:
    """While it lasts, the live tasks directory holds a new module whose dependency is missing
    (unimportable.py, line 2: a name of its own, never one another test keeps a version of)
    and live.py saved with a syntax error, as the stack sees them; both put right on the way
    out, once the stack sees that too."""
    from tests.waiting import until

    (live_tasks / "unimportable.py").write_text(NEEDS_DEPENDENCY.replace("needsdep", "unimportable"))
    (live_tasks / "live.py").write_text(LIVE_TASK.replace("def version()", "def version(:"))
    try:
        until(lambda: api.get("/v1/tasks/live/version").json().get("problem") is not None)
        until(lambda: bool(api.get("/v1/tasks").json()["unloaded_modules"]))
        yield
    finally:
        (live_tasks / "unimportable.py").unlink()
        (live_tasks / "live.py").write_text(LIVE_TASK)
    until(lambda: api.get("/v1/tasks/live/version").json().get("problem") is None)
    until(lambda: api.get("/v1/tasks").json()["unloaded_modules"] == [])


@pytest.fixture(scope="session")
def live_tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tasks directory that tests edit while the stack runs."""
    directory = tmp_path_factory.mktemp("live_tasks")
    (directory / "live.py").write_text(LIVE_TASK)
    return directory


@pytest.fixture(scope="session")
def stack(live_tasks: Path) -> Iterator[LocalStack]:
    local = LocalStack(
        root=ROOT,
        extra_task_dirs=[USER_TASKS, live_tasks],
        api_key=API_KEY,
        settings_overrides={
            "TASKRUN_COMPAT_WAIT_SECONDS": str(COMPAT_WAIT_SECONDS),
            "POWERTOOLS_LOG_LEVEL": "INFO",
            "TASKRUN_WEBHOOK_RETRY_DELAYS": WEBHOOK_RETRY_DELAYS,
            "TASKRUN_WEBHOOK_TIMEOUT_SECONDS": str(WEBHOOK_TIMEOUT_SECONDS),
            "TASKRUN_KEY_CACHE_SECONDS": str(KEY_CACHE_SECONDS),
        },
        throttle=GENEROUS,
    )
    local.emulator.runtime.echo_logs = False  # kept in runtime.logs for the tests that read them
    local.start()
    local.serve("127.0.0.1", 0, log=False, read_timeout=READ_TIMEOUT_SECONDS)
    yield local
    local.stop()


@pytest.fixture(scope="session")
def base_url(stack: LocalStack) -> str:
    assert stack._server is not None
    host, port = stack._server.server_address[:2]
    return f"http://{host}:{port}"


@pytest.fixture(scope="module")
def private_webhooks(stack: LocalStack) -> Iterator[None]:
    """Webhooks may reach this machine (TASKRUN_WEBHOOK_ALLOW_PRIVATE=1), for a receiver in
    the tests of one module (a change of setting starts every function's sandboxes anew)."""
    runtime = stack.emulator.runtime
    runtime.update_environment(WEBHOOK_CHECKERS, {"TASKRUN_WEBHOOK_ALLOW_PRIVATE": "1"})
    yield
    runtime.update_environment(WEBHOOK_CHECKERS, {"TASKRUN_WEBHOOK_ALLOW_PRIVATE": None})


# The server's per-request wait where a test needs waits of seconds to take several requests.
SHORT_WAIT_SECONDS = 1
WAITING_FUNCTIONS = ["StartRunFunction", "GetRunFunction"]


@pytest.fixture(scope="module")
def short_server_waits(stack: LocalStack) -> Iterator[None]:
    """The API waits at most SHORT_WAIT_SECONDS a request, for the tests of one module."""
    runtime = stack.emulator.runtime
    runtime.update_environment(WAITING_FUNCTIONS, {"TASKRUN_MAX_WAIT_SECONDS": str(SHORT_WAIT_SECONDS)})
    yield
    runtime.update_environment(WAITING_FUNCTIONS, {"TASKRUN_MAX_WAIT_SECONDS": None})


@pytest.fixture
def receiver(stack: LocalStack, private_webhooks: None) -> Iterator[Receiver]:
    """A webhook receiver on this machine that verifies with the stack's signing secret."""
    assert stack.webhook_secret is not None
    found = Receiver(stack.webhook_secret)
    yield found
    found.stop()


@pytest.fixture
def api(base_url: str) -> Iterator[httpx.Client]:
    """An HTTP client of the local stack with a valid key."""
    with httpx.Client(base_url=base_url, headers={"X-API-KEY": API_KEY}, timeout=60) as client:
        yield client


@pytest.fixture
def anonymous(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        yield client


def load_event(name: str) -> dict[str, Any]:
    """A sample event, as if it arrived now (API Gateway stamps its arrival time)."""
    event = copy.deepcopy(json.loads((EVENTS / f"{name}.json").read_text()))
    if "requestTimeEpoch" in event.get("requestContext", {}):
        event["requestContext"]["requestTimeEpoch"] = int(time.time() * 1000)
    return event


@pytest.fixture
def invoke(stack: LocalStack) -> Callable[[str, dict[str, Any]], Any]:
    """Call a function's handler directly with an event, as Lambda would."""
    return stack.emulator.runtime.invoke


@pytest.fixture
def own_sweeps(stack: LocalStack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stack's own sweep (every five minutes, on the shared stack) held off, so that
    what a test's sweep reports is what that sweep did."""
    runtime = stack.emulator.runtime
    original = runtime.invoke_async

    def invoke_async(name_or_arn: str, event: Any) -> None:
        scheduled = isinstance(event, dict) and event.get("detail-type") == "Scheduled Event"
        if not (scheduled and runtime.function_name(name_or_arn) == "SweeperFunction"):
            original(name_or_arn, event)

    monkeypatch.setattr(runtime, "invoke_async", invoke_async)
