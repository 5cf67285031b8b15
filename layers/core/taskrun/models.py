"""pydantic models of a run: its record, its views and lists, its status, error, attempts,
progress and slots; times as the API writes them."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, PlainSerializer

from taskrun.ids import RunId, TaskId
from taskrun.modelbase import Model
from taskrun.results.tasklogs import Frame


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and a `Z`, the one time format of the API (the
    year always four digits: strftime writes the year 110 as `110`, which no parser reads)."""
    moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _expressible_in_utc(moment: datetime) -> datetime:
    """A time given with an offset that takes it past the years UTC can write is refused as
    input (422), rather than failing when it is answered."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time lies outside the years 0001 to 9999 in UTC") from None
    return moment


UtcTime = Annotated[
    datetime,
    AfterValidator(_expressible_in_utc),
    PlainSerializer(format_time, return_type=str, when_used="json"),
]

MAX_WAIT_TIMEOUT = 900
MAX_RETRIES = 20
MAX_DELAY_SECONDS = 30 * 86_400  # a delayed start or a ttl: at most 30 days ahead


class TaskType(StrEnum):
    SCRIPT = "script"
    FLOW = "flow"


class RunStatus(StrEnum):
    QUEUED = "queued"  # waiting for its start time: a delay, run_at, or the backoff before a retry
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def is_done(self) -> bool:
        return self not in ACTIVE_STATUSES


ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.PENDING, RunStatus.RUNNING)


class ErrorType(StrEnum):
    EXECUTION_ERROR = "execution_error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    VALIDATION_ERROR = "validation_error"
    NOT_FOUND = "not_found"
    DISPATCH_ERROR = "dispatch_error"
    EXPIRED = "expired"  # not started before its ttl ran out


class TriggeredBy(StrEnum):
    API = "api"
    SCHEDULE = "schedule"
    STEP_FUNCTIONS = "step_functions"
    MCP = "mcp"  # an MCP client's tools/call (POST /mcp)


MAX_ERROR_MESSAGE = 8_192  # characters; an exception's text can be any length, the run's item cannot


def _clip_message(text: str) -> str:
    marker = " [cut]"
    return text if len(text) <= MAX_ERROR_MESSAGE else text[: MAX_ERROR_MESSAGE - len(marker)] + marker


class RunError(Model):
    type: ErrorType
    message: Annotated[str, AfterValidator(_clip_message)] = Field(
        description=f"What went wrong; at most {MAX_ERROR_MESSAGE:,} characters (a longer one ends in ' [cut]')."
    )
    exception_type: str | None = Field(
        default=None, description="For execution errors, the type name of the exception the task raised."
    )
    frames: list[Frame] | None = Field(
        default=None,
        description="For execution errors, where the exception was raised: the task's frames, innermost last "
        "(the whole traceback is in the run's logs).",
    )


MAX_TAGS = 10
TAG_PATTERN = r"^[A-Za-z0-9_.:=+@/-]{1,64}$"
Tag = Annotated[str, Field(pattern=TAG_PATTERN, examples=["tenant:acme"])]
Tags = Annotated[
    list[Tag],
    Field(
        max_length=MAX_TAGS,
        description=f"At most {MAX_TAGS} tags, each 1 to 64 letters, digits or _.:=+@/- (list filter: ?tag=).",
    ),
]
MAX_ATTEMPT_MESSAGE = 500  # characters of each earlier attempt's error kept on the run


def _clip_attempt_message(text: str) -> str:
    marker = " [cut]"
    return text if len(text) <= MAX_ATTEMPT_MESSAGE else text[: MAX_ATTEMPT_MESSAGE - len(marker)] + marker


class RunAttemptError(Model):
    type: ErrorType
    message: Annotated[str, AfterValidator(_clip_attempt_message)]
    exception_type: str | None = None


class RunAttempt(Model):
    """One ended attempt of a run that was tried again (the last attempt is the run itself)."""

    attempt: int = Field(ge=1)
    status: RunStatus
    started_at: UtcTime
    ended_at: UtcTime
    error: RunAttemptError | None = None


class Backoff(Model):
    """The wait before each retry: `first` seconds, times `factor` for each retry after, never
    more than `cap`, each shortened at random by up to `jitter` (a fraction) so that runs that
    failed together do not all come back together."""

    model_config = ConfigDict(frozen=True)

    first: float = Field(default=1.0, ge=0, le=86_400)
    factor: float = Field(default=2.0, ge=1, le=10)
    cap: float = Field(default=300.0, ge=0, le=86_400)
    jitter: float = Field(default=0.2, ge=0, le=1)

    def delay(self, retry: int, draw: float) -> float:
        """Seconds before retry number `retry` (1 for the first); `draw` is uniform in [0, 1)."""
        return min(self.cap, self.first * self.factor ** (retry - 1)) * (1 - self.jitter * draw)


class RetryPolicy(Model):
    """How a task's failed runs are tried again (copied onto each run when it is made)."""

    retries: int = Field(ge=0, le=MAX_RETRIES, description="Attempts after the first.")
    backoff: Backoff = Field(default_factory=Backoff)


MAX_PROGRESS_MESSAGE = 200  # characters of a progress message


def _clip_progress_message(text: str | None) -> str | None:
    return text if text is None or len(text) <= MAX_PROGRESS_MESSAGE else text[: MAX_PROGRESS_MESSAGE - 1] + "…"


class Progress(Model):
    """How far a running task says it has come (`RunContext.progress`); the last report stays
    on the run once it ends."""

    done: float = Field(ge=0, allow_inf_nan=False, description="Units of work done so far.")
    total: float | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="Units of work in all, when the task knows."
    )
    message: Annotated[str | None, AfterValidator(_clip_progress_message)] = Field(
        default=None, description=f"What the task is doing now (at most {MAX_PROGRESS_MESSAGE} characters)."
    )
    percent: float | None = Field(
        default=None, ge=0, le=100, description="done / total, as a percentage (0 to 100), when total is known."
    )
    updated_at: UtcTime

    @classmethod
    def reported(cls, done: float, total: float | None, message: str | None, at: datetime) -> Progress:
        percent = None if total is None else round(min(100.0, 100.0 * done / total), 1)
        return cls(done=done, total=total, message=message, percent=percent, updated_at=at)


class Slot(Model):
    """A limit a run takes a slot of while it runs: its name and how many slots it has."""

    name: str
    size: int = Field(ge=0)


ConcurrencyKey = Annotated[
    str,
    Field(
        pattern=TAG_PATTERN,
        description="Runs of one key share the task's per-key limit (for example a tenant id).",
        examples=["tenant-42"],
    ),
]


class Run(Model):
    """A run as the API shows it and the store keeps it."""

    run_id: RunId
    task_id: TaskId
    task_type: TaskType = TaskType.SCRIPT
    revision: str
    status: RunStatus = RunStatus.PENDING
    arguments: dict[str, Any] = Field(default_factory=dict)
    # internal: whether the arguments hold a secret to mask when the run is shown (None: a run
    # recorded before this was kept, looked up in its task's parameters)
    secret_arguments: bool | None = None
    result: Any = None
    result_url: str | None = Field(
        default=None,
        description="A result too large for the record: a pre-signed link to it, fresh on each read (result null).",
    )
    result_key: str | None = None  # internal: where in the results bucket the result is
    cached: bool = Field(default=False, description="The result is an earlier run's (the task's cache_ttl).")
    cached_from: str | None = Field(default=None, description="For a cached run, the run its result came from.")
    cache_key: str | None = None  # internal: the task, revision and arguments a cached result answers
    cache_ttl: int | None = None  # internal: how long this run's result answers identical runs
    error: RunError | None = None
    triggered_by: TriggeredBy = TriggeredBy.API
    schedule_id: str | None = None
    parent_run_id: str | None = None
    webhook_url: str | None = None
    json_schema: dict[str, Any] | None = Field(
        default=None, description="The JSON Schema (Draft 2020-12) the run's result must meet."
    )
    timeout: int | None = Field(
        default=None, description="Seconds the task may run before the run ends timed_out (scripts)."
    )
    execution_arn: str | None = Field(default=None, description="The Step Functions execution of a flow run.")
    parent_execution: str | None = Field(
        default=None, description="The Step Functions execution that started this run (triggered_by step_functions)."
    )
    task_token: str | None = Field(default=None, description="Released with the run's outcome when it ends.")
    tags: Tags = Field(default_factory=list)
    rerun_of: str | None = Field(default=None, description="The run this one is a re-run of.")
    reruns: list[str] = Field(default_factory=list, description="The re-runs of this run (the first 100).")
    attempt: int = Field(default=1, ge=1, description="The attempt running, or the last one; 1 unless retried.")
    attempts: list[RunAttempt] = Field(
        default_factory=list, description="The earlier attempts of a run that was tried again, oldest first."
    )
    next_attempt_at: UtcTime | None = Field(
        default=None, description="While queued: when its (next) attempt starts (a delay, run_at or retry backoff)."
    )
    expires_at: UtcTime | None = Field(
        default=None, description="From the request's ttl: a run not started by then ends failed, `expired`."
    )
    progress: Progress | None = Field(default=None, description="The task's last report of how far it has come.")
    retry: RetryPolicy | None = None  # internal: the task's retry policy, as it was when the run was made
    concurrency_key: ConcurrencyKey | None = None
    slots: list[Slot] = Field(default_factory=list)  # internal: the limits it runs within, its task's first
    waiting_for: str | None = None  # internal: while queued for room in a limit, that limit
    created_at: UtcTime
    started_at: UtcTime | None = None
    ended_at: UtcTime | None = None
    duration_ms: int | None = None
    usage: dict[str, float] = Field(default_factory=dict)

    @property
    def retries_left(self) -> bool:
        return self.retry is not None and self.attempt <= self.retry.retries

    def to_api(self) -> RunView:
        return RunView(
            **self.model_dump(exclude={"task_token"}),
            is_done=self.status.is_done,
            is_successful=self.status is RunStatus.SUCCEEDED,
        )

    def to_summary(self) -> RunSummary:
        return RunSummary(
            **self.model_dump(exclude={"task_token", "arguments", "result", "attempts", "reruns"}),
            is_done=self.status.is_done,
            is_successful=self.status is RunStatus.SUCCEEDED,
        )


class RunView(Run):
    """A run with the two flags clients test most, derived from its status."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "run_id": "run_01m8496zv092capcb6htkybrew",
                    "task_id": "examples/greet",
                    "task_type": "script",
                    "revision": "1",
                    "status": "succeeded",
                    "is_done": True,
                    "is_successful": True,
                    "arguments": {"name": "Ada"},
                    "result": "Hello, Ada!",
                    "result_url": None,
                    "error": None,
                    "triggered_by": "api",
                    "created_at": "2026-11-24T09:30:00.120Z",
                    "started_at": "2026-11-24T09:30:00.180Z",
                    "ended_at": "2026-11-24T09:30:00.195Z",
                    "duration_ms": 15,
                }
            ]
        }
    )

    is_done: bool
    is_successful: bool
    task_token: None = Field(default=None, exclude=True)  # a secret of the calling state machine
    result_key: str | None = Field(default=None, exclude=True)
    cache_key: str | None = Field(default=None, exclude=True)
    cache_ttl: int | None = Field(default=None, exclude=True)
    retry: RetryPolicy | None = Field(default=None, exclude=True)
    secret_arguments: bool | None = Field(default=None, exclude=True)
    slots: list[Slot] = Field(default_factory=list, exclude=True)
    waiting_for: str | None = Field(default=None, exclude=True)


class RunSummary(RunView):
    """A run as lists show it: without its arguments and result (up to 380 KB together), which
    GET /v1/runs/{run_id} has, so that a page of runs stays far below Lambda's 6 MB response."""

    arguments: dict[str, Any] = Field(default_factory=dict, exclude=True)
    result: Any = Field(default=None, exclude=True)
    json_schema: dict[str, Any] | None = Field(default=None, exclude=True)
    attempts: list[RunAttempt] = Field(default_factory=list, exclude=True)
    reruns: list[str] = Field(default_factory=list, exclude=True)


class RunList(Model):
    runs: list[RunSummary]
    next_cursor: str | None = None
