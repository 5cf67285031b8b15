"""Lambda of local mode: each function's sandboxes, started on demand, and its invocations.

Each function keeps warm sandboxes for reuse and starts more while all are busy, up to
its concurrency limit; past the limit a synchronous invocation waits a few seconds for a
free sandbox and is then throttled, and asynchronous ones queue, as Lambda's own queue holds them. A failed asynchronous
invocation is retried as its EventInvokeConfig says, then goes to the function's
on-failure destination (a Lambda or an SQS queue) with the record Lambda sends.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from taskrun.local.faults import Faults
from taskrun.local.resources import ACCOUNT_ID, FunctionSpec
from taskrun.local.sandbox import FunctionError, FunctionImage, InvokeRefused, Sandbox, error_payload

DEFAULT_CONCURRENCY = 16
# How long an invocation waits for a sandbox of a function whose sandboxes are all busy
# before it is throttled (Lambda throttles at once, but scales to far more than a laptop's
# sandboxes); well below API Gateway's 29 s, so a request past capacity is a 429, not a 504.
THROTTLE_WAIT_SECONDS = 5.0
MAX_ASYNC_PAYLOAD_BYTES = 1024 * 1024
ASYNC_RETRY_DELAY_SECONDS = 0.5  # Lambda waits about a minute, then two; locally the retries come sooner
THROTTLE_BACKOFF_MAX_SECONDS = 5.0
# How long a sandbox may sit unused before it is stopped, as Lambda retires an execution
# environment nothing has invoked for some minutes (TASKRUN_LOCAL_IDLE_SECONDS)
DEFAULT_IDLE_SECONDS = 300.0
LOG_LINES_KEPT = 5000


def sandbox_deadline() -> float:
    """Until when a synchronous invocation starting now may wait for a sandbox: one deadline
    for a request, to pass to each invocation it makes."""
    return time.monotonic() + THROTTLE_WAIT_SECONDS


class FunctionPool:
    """The sandboxes of one function."""

    def __init__(self, image: FunctionImage, limit: int, on_log: Callable[[str, str], None]) -> None:
        self.image = image
        self.limit = limit
        self._on_log = on_log
        self._idle: list[Sandbox] = []  # the most recently used last
        self._idle_since: dict[Sandbox, float] = {}
        self._all: set[Sandbox] = set()
        self._count = 0
        self._generation = 0  # of the task code; a sandbox of an older one is not used again
        self._changed = threading.Condition()
        self._closed = False

    def invoke(self, event_text: str, wait_until: float | None = None) -> str:
        sandbox = self._acquire(wait_until)
        healthy = False
        try:
            if sandbox.init_error is not None:
                raise FunctionError(sandbox.init_error)
            result, healthy = sandbox.invoke(event_text, self.image.timeout)
            return result
        except FunctionError as error:
            healthy = error.sandbox_fit
            raise
        finally:
            self._release(sandbox, healthy)

    def _acquire(self, wait_until: float | None = None) -> Sandbox:
        """A free sandbox, or a new one while there is room; past the limit, wait for one to
        be freed until `wait_until` (a `time.monotonic()` time, by default THROTTLE_WAIT_SECONDS
        from now), then refuse with 429. The deadline is the caller's: a request that invokes
        several functions one after another (an authorizer, then its integration) gives each
        the same one, so its waits add up to no more than one."""
        deadline = wait_until if wait_until is not None else sandbox_deadline()
        with self._changed:
            while True:
                if self._closed:
                    raise InvokeRefused(error_payload("ServiceException", "the local stack is stopping"), 500)
                while self._idle:
                    sandbox = self._idle.pop()
                    self._idle_since.pop(sandbox, None)
                    if sandbox.alive and sandbox.generation == self._generation:
                        return sandbox
                    self._retire(sandbox)
                if self._count < self.limit:
                    self._count += 1
                    generation = self._generation
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    busy = f"Rate Exceeded: {self.limit} sandboxes are busy"
                    raise InvokeRefused(error_payload("TooManyRequestsException", busy), 429)
                self._changed.wait(remaining)
        return self._start(generation)

    def _start(self, generation: int) -> Sandbox:
        """Start a sandbox in a place already counted (given back if it cannot start)."""
        try:
            sandbox = Sandbox(self.image, self._on_log, generation)
        except BaseException:
            with self._changed:
                self._count -= 1
                self._changed.notify()
            raise
        with self._changed:
            self._all.add(sandbox)
        return sandbox

    def warm(self) -> None:
        """Start a sandbox before the first invocation needs it (its init phase: the handler
        imported), as Lambda's proactive initialization does, unless one is idle already."""
        with self._changed:
            if self._idle or self._count >= self.limit or self._closed:
                return
            self._count += 1
            generation = self._generation
        sandbox = self._start(generation)
        self._release(sandbox, healthy=sandbox.init_error is None)  # a failed init is the first invocation's to meet

    def _release(self, sandbox: Sandbox, healthy: bool) -> None:
        with self._changed:
            fit = healthy and sandbox.alive and not self._closed
            if fit and sandbox.generation == self._generation:
                self._idle.append(sandbox)
                self._idle_since[sandbox] = time.monotonic()
            else:
                self._retire(sandbox)
            self._changed.notify()

    def _retire(self, sandbox: Sandbox) -> None:
        """Stop a sandbox (called with the lock held)."""
        self._count -= 1
        self._all.discard(sandbox)
        sandbox.kill()

    def retire_idle(self, idle_seconds: float) -> int:
        """Stop the sandboxes unused for `idle_seconds` or more; answer how many."""
        now = time.monotonic()
        with self._changed:
            stale = [sandbox for sandbox in self._idle if now - self._idle_since.get(sandbox, now) >= idle_seconds]
            for sandbox in stale:
                self._idle.remove(sandbox)
                self._idle_since.pop(sandbox, None)
                self._retire(sandbox)
            return len(stale)

    def pids(self) -> list[int]:
        """The process ids of its live sandboxes."""
        with self._changed:
            return [pid for sandbox in self._all if (pid := sandbox.process.pid) is not None]

    def renew(self) -> None:
        """New code: idle sandboxes go now, busy ones once their invocation ends."""
        with self._changed:
            self._generation += 1
            for sandbox in self._idle:
                self._retire(sandbox)
            self._idle = []
            self._idle_since.clear()

    def close(self) -> None:
        with self._changed:
            self._closed = True
            busy = self._all - set(self._idle)
            for sandbox in self._idle:
                self._retire(sandbox)
            self._idle = []
            self._idle_since.clear()
            self._changed.notify_all()
        for sandbox in busy:  # their invocations fail at once; the stack is going
            sandbox.kill()


class LambdaRuntime:
    """Every function of the template, each with its own sandboxes."""

    def __init__(
        self,
        functions: list[FunctionSpec],
        region: str,
        concurrency: int = DEFAULT_CONCURRENCY,
        idle_seconds: float = DEFAULT_IDLE_SECONDS,
    ) -> None:
        self._stopping = threading.Event()
        self._reaping = threading.Event()  # set to check at once (a new idle time, the stop)
        self._idle_seconds = idle_seconds
        self._functions = {spec.logical_id: spec for spec in functions}
        self._named = {spec.name: spec.logical_id for spec in functions if spec.name}  # FunctionName → logical id
        self._region = region
        self._concurrency = concurrency
        self._pools: dict[str, FunctionPool] = {}
        self._versions: dict[str, list[dict[str, str]]] = {}  # a function's published versions' variables
        self._lock = threading.Lock()
        self._async = ThreadPoolExecutor(max_workers=concurrency * 4, thread_name_prefix="lambda-async")
        self.environment: dict[str, str] = {}  # for every sandbox: the emulator's endpoint, credentials, overrides
        self.credentials: dict[str, dict[str, str]] = {}  # each function's own (its role's), over the shared ones
        self.logs: collections.deque[tuple[str, str]] = collections.deque(maxlen=LOG_LINES_KEPT)
        self.faults = Faults()
        self.echo_logs = True
        threading.Thread(target=self._retire_idle, name="lambda-idle", daemon=True).start()

    def __contains__(self, name: str) -> bool:
        return self.function_name(name) in self._functions

    def function_name(self, name_or_arn: str) -> str:
        """The function's logical id, from its name, its FunctionName or either's ARN."""
        name = name_or_arn.split(":function:")[-1].split(":")[0]
        return self._named.get(name, name)

    def spec(self, name_or_arn: str) -> FunctionSpec | None:
        return self._functions.get(self.function_name(name_or_arn))

    def _log(self, function: str, line: str) -> None:
        self.logs.append((function, line))
        if self.echo_logs:
            print(f"[{function}] {readable(line)}", file=sys.stderr, flush=True)

    def pool(self, name: str, version: str | None = None) -> FunctionPool:
        """The sandboxes of a function, or of one of its published versions."""
        with self._lock:
            key = name if version is None else f"{name}:{version}"
            pool = self._pools.get(key)
            if pool is None:
                spec = self._functions[name]
                published = self._versions[name][int(version) - 1] if version is not None else {}
                image = FunctionImage(
                    name=name,
                    code_uri=str(spec.code_uri),
                    handler=spec.handler,
                    timeout=float(spec.timeout),
                    memory=spec.memory,
                    region=self._region,
                    environment={
                        **spec.environment,
                        **self.environment,
                        **published,
                        **self.credentials.get(name, {}),
                        "AWS_LAMBDA_FUNCTION_NAME": name,
                        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory),
                        "AWS_LAMBDA_FUNCTION_VERSION": version or "$LATEST",
                    },
                )
                pool = self._pools[key] = FunctionPool(image, self._concurrency, self._log)
            return pool

    def warm(self, names: list[str]) -> None:
        """Start a sandbox of each of these functions in the background (init only)."""

        def start(name: str) -> None:
            try:
                self.pool(name).warm()
            except Exception as error:  # the function's first invocation meets it again, and says so
                self._log(name, f"a sandbox started ahead of use failed: {error}")

        for name in names:
            if name in self._functions:
                threading.Thread(target=start, args=(name,), name=f"warm-{name}", daemon=True).start()

    def publish_version(self, name_or_arn: str, variables: Mapping[str, str]) -> str:
        """Publish a version of a function whose sandboxes get these variables over its own
        (its code, locally: the task modules as they were); the version's number."""
        name = self.function_name(name_or_arn)
        with self._lock:
            versions = self._versions.setdefault(name, [])
            versions.append(dict(variables))
            return str(len(versions))

    def latest_version(self, name_or_arn: str) -> str | None:
        with self._lock:
            versions = self._versions.get(self.function_name(name_or_arn))
            return str(len(versions)) if versions else None

    def pools(self) -> dict[str, FunctionPool]:
        """The functions invoked (or warmed) so far, each with its sandboxes."""
        with self._lock:
            return dict(self._pools)

    def invoke_text(
        self, name_or_arn: str, event_text: str, wait_until: float | None = None, version: str | None = None
    ) -> str:
        """A synchronous invocation with the event as JSON text; the result as JSON text.
        Past the function's sandboxes it waits for one until `wait_until` (see sandbox_deadline).
        With `version`, a published version's (a number; any other runs $LATEST)."""
        name = self.function_name(name_or_arn)
        if self.faults.strikes("throttle", name):
            raise InvokeRefused(error_payload("TooManyRequestsException", "Rate Exceeded (an injected fault)"), 429)
        with self._lock:
            published = len(self._versions.get(name, []))
        if version is not None and not (version.isdigit() and 1 <= int(version) <= published):
            version = None
        return self.pool(name, version).invoke(event_text, wait_until)

    def invoke(self, name_or_arn: str, event: Any, wait_until: float | None = None) -> Any:
        """Call the function as Lambda would; its failure raises FunctionError."""
        return json.loads(self.invoke_text(name_or_arn, json.dumps(event), wait_until))

    def invoke_async(self, name_or_arn: str, event: Any) -> None:
        """Queue an asynchronous invocation; a failure is retried (the function's
        MaximumRetryAttempts), then goes to its on-failure destination."""
        spec = self._functions[self.function_name(name_or_arn)]
        event_text = json.dumps(event)
        if len(event_text) > MAX_ASYNC_PAYLOAD_BYTES:
            raise FunctionError(error_payload("RequestEntityTooLargeException", "the event is over 1 MB"))

        def run() -> None:
            queued = time.monotonic()
            attempt, throttles = 1, 0
            while True:
                try:
                    self.invoke_text(spec.logical_id, event_text)
                    return
                except FunctionError as error:
                    if self._stopping.is_set():
                        return  # cut off by the stop: the run is the next start's to end (CutOffRuns)
                    self._log(spec.logical_id, f"async invoke failed: {error.payload['errorType']}: {error}")
                    failure = error.payload
                    throttled = isinstance(error, InvokeRefused) and error.throttled
                if throttled and time.monotonic() - queued < spec.max_event_age:
                    # Lambda keeps a throttled event queued and tries it again, without using up a retry
                    throttles += 1
                    time.sleep(min(THROTTLE_BACKOFF_MAX_SECONDS, ASYNC_RETRY_DELAY_SECONDS * throttles))
                    continue
                if attempt > spec.async_retries:
                    break
                time.sleep(ASYNC_RETRY_DELAY_SECONDS * attempt)
                attempt += 1
            record = _failure_record(spec, self._region, event, failure, attempts=attempt)
            if spec.on_failure:
                self.invoke_async(spec.on_failure, record)
            elif spec.on_failure_queue:
                send_to_queue(spec.on_failure_queue, record, self._region)

        self._async.submit(run)
        if self.faults.strikes("duplicate", spec.logical_id):
            self._async.submit(run)  # the same event, delivered a second time

    def update_environment(self, functions: list[str], changes: Mapping[str, str | None]) -> None:
        """Set (or, with None, remove) variables of some functions, as UpdateFunctionConfiguration
        does on AWS: their next invocations run in new sandboxes; other functions keep theirs."""

        def changed(variables: dict[str, str]) -> dict[str, str]:
            updated = {**variables, **{key: value for key, value in changes.items() if value is not None}}
            return {key: value for key, value in updated.items() if changes.get(key, "") is not None}

        with self._lock:
            for name in functions:
                spec = self._functions[name]
                self._functions[name] = dataclasses.replace(spec, environment=changed(spec.environment))
                pool = self._pools.get(name)
                if pool is not None:
                    pool.image = dataclasses.replace(pool.image, environment=changed(pool.image.environment))
                    pool.renew()

    def renew(self) -> None:
        """Task code changed: every function's next invocations run in new sandboxes."""
        with self._lock:
            pools = list(self._pools.values())
        for pool in pools:
            pool.renew()

    @property
    def idle_seconds(self) -> float:
        """How long a sandbox may sit unused before it is stopped."""
        return self._idle_seconds

    @idle_seconds.setter
    def idle_seconds(self, seconds: float) -> None:
        self._idle_seconds = seconds
        self._reaping.set()

    def _retire_idle(self) -> None:
        """Stop each sandbox once it has been idle `idle_seconds`, checking a few times within
        that time."""
        while not self._stopping.is_set():
            self._reaping.wait(max(0.2, min(self._idle_seconds / 4, 15.0)))
            self._reaping.clear()
            for pool in self.pools().values():
                pool.retire_idle(self._idle_seconds)

    def stop(self) -> None:
        self._stopping.set()
        self._reaping.set()
        with self._lock:
            pools = list(self._pools.values())
        for pool in pools:
            pool.close()
        self._async.shutdown(wait=False, cancel_futures=True)


# what a structured (Powertools) log line holds that says nothing to a person at a terminal
LOG_PLUMBING = {"level", "message", "location", "timestamp", "service", "sampling_rate", "xray_trace_id"}


def readable(line: str) -> str:
    """A function's structured log line (Powertools' JSON) as a person reads it at the stack's
    terminal: `WARNING scheduled run refused (schedule_id=..., error=...)`; any other line as it is."""
    if not line.startswith("{"):
        return line
    try:
        record = json.loads(line)
    except ValueError:
        return line
    if not isinstance(record, dict) or "level" not in record or "message" not in record:
        return line
    extra = ", ".join(f"{key}={value}" for key, value in record.items() if key not in LOG_PLUMBING)
    return f"{record['level']} {record['message']}" + (f" ({extra})" if extra else "")


def send_to_queue(queue_name: str, record: dict[str, Any], region: str) -> None:
    """A dead letter, sent to the emulator's queue as Lambda or EventBridge would send it."""
    from taskrun import aws

    sqs = aws.new_client("sqs", region_name=region)
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=queue_name)["QueueUrl"], MessageBody=json.dumps(record))


def _failure_record(
    spec: FunctionSpec, region: str, event: Any, error: dict[str, Any], attempts: int = 1
) -> dict[str, Any]:
    return {
        "version": "1.0",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{spec.logical_id}:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {"errorType": error["errorType"], "errorMessage": error["errorMessage"]},
    }
