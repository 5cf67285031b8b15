"""A Python client of the taskrun API, sync (`Client`) and async (`AsyncClient`), on httpx.

    from taskrun.client import Client

    with Client() as taskrun:  # TASKRUN_URL and TASKRUN_API_KEY, else the local stack
        run = taskrun.run("examples/greet", {"name": "Ada"}, wait=60)
        print(run.status, run.result)

Answers are the API's own pydantic models (`RunView`, `TaskInfo`, ...). An error answer
raises a `ProblemError` of its status (`NotFound`, `Invalid`, ...) carrying the problem
document. Requests are retried only where that is safe: reads, and run creation, which is
sent with an Idempotency-Key so that a retry answers the first run rather than starting
another.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import TypeAdapter

from taskrun import __version__
from taskrun.models import BatchAnswer, BatchItem, RunList, RunSummary, RunView, TaskInfo, TaskList
from taskrun.tasklogs import RunLogs

if TYPE_CHECKING:
    from taskrun.deliveries import Delivery, DeliveryList
    from taskrun.files import Upload
    from taskrun.flows import FlowStep
    from taskrun.schedules import ScheduleList, ScheduleView

DEFAULT_URL = "http://127.0.0.1:9477"
SERVER_WAIT_CAP = 25.0  # seconds one request may wait on the server (the stack's MaxWaitSeconds)
RETRIED_STATUSES = {429, 502, 503, 504}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
LOCAL_KEY_FILE = ".taskrun/api-key"  # where `taskrun local` keeps its key (taskrun.local.stack)
FOLLOW_SECONDS = 1.0  # how often following a run reads its new logs


class TaskrunError(Exception):
    """Anything the client raises of its own."""


class ProblemError(TaskrunError):
    """The API answered an error: the problem document (RFC 9457) it sent."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.title: str = str(problem.get("title") or status)
        self.detail: str = str(problem.get("detail") or "")
        self.errors: list[dict[str, Any]] = list(problem.get("errors") or [])
        where = "; ".join(f"{e.get('location')}: {e.get('message')}" for e in self.errors)
        super().__init__(f"{status} {self.title}: {self.detail}" + (f" ({where})" if where else ""))


class BadRequest(ProblemError):
    """400 or 415: the body is not JSON."""


class Unauthorized(ProblemError):
    """401: no key, or one that is not valid."""


class Forbidden(ProblemError):
    """403: the key lacks the route's scope."""


class NotFound(ProblemError):
    """404: no such task, run, schedule or route."""


class Conflict(ProblemError):
    """409: the resource's state refuses the request (a run that has ended, a reused key)."""


class PayloadTooLarge(ProblemError):
    """413."""


class Invalid(ProblemError):
    """422: well formed but not valid; `errors` says where."""


class Throttled(ProblemError):
    """429, still after the client's retries."""


class ServerError(ProblemError):
    """5xx."""


ERRORS: dict[int, type[ProblemError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: BadRequest,
    422: Invalid,
    429: Throttled,
}


def problem_error(response: httpx.Response) -> ProblemError:
    try:
        problem = response.json()
    except ValueError:
        problem = None
    if not isinstance(problem, dict):  # not the API's answer (a proxy's page, the gateway's own)
        problem = {"title": response.reason_phrase, "status": response.status_code, "detail": response.text[:500]}
    kind = ERRORS.get(response.status_code, ServerError if response.status_code >= 500 else ProblemError)
    return kind(response.status_code, problem)


@dataclass(frozen=True)
class Call:
    """One request: what to send, whether it may be sent again, and how to read the answer."""

    method: str
    path: str
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    retry: bool = False  # safe to send again after a transport error or a 429/5xx
    timeout: float | None = None  # beyond the client's own, for a request that waits on the server

    def request(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        params = {name: _param(value) for name, value in self.params.items() if value is not None}
        request = client.build_request(self.method, self.path, params=params, json=self.json, headers=self.headers)
        if self.timeout is not None:  # a request that waits on the server gets that long to be answered
            seconds = self.timeout + 30
            request.extensions["timeout"] = httpx.Timeout(seconds).as_dict()
        return request


def _param(value: Any) -> Any:
    return ("true" if value else "false") if isinstance(value, bool) else value


def _pause(attempt: int, response: httpx.Response | None) -> float:
    """Seconds before another attempt: Retry-After when the API says, else backoff with jitter."""
    if response is not None:
        try:
            return min(30.0, float(response.headers.get("Retry-After", "")))
        except ValueError:
            pass
    return min(8.0, 0.25 * 2**attempt) * random.uniform(0.5, 1.0)


def _read(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise problem_error(response)
    return response.json() if response.content else None


def _settings(url: str | None, key: str | None) -> tuple[str, dict[str, str]]:
    base = (url or os.environ.get("TASKRUN_URL") or DEFAULT_URL).rstrip("/")
    headers = {"User-Agent": f"taskrun-python/{__version__}"}
    secret = key or os.environ.get("TASKRUN_API_KEY") or _local_key(base)
    if secret:
        headers["X-API-KEY"] = secret
    return base, headers


def _run_call(
    task_id: str,
    arguments: dict[str, Any] | None,
    wait: float | None,
    fields: dict[str, Any],
    idempotency_key: str | None,
) -> Call:
    body: dict[str, Any] = {"task_id": task_id, "arguments": arguments or {}}
    body |= {name: value for name, value in fields.items() if value is not None}
    if body.get("cache") is True:
        del body["cache"]
    if isinstance(body.get("run_at"), datetime):
        body["run_at"] = body["run_at"].isoformat()
    params: dict[str, Any] = {}
    if wait:
        params = {"wait": True, "wait_timeout": min(wait, SERVER_WAIT_CAP)}
    headers = {"Idempotency-Key": idempotency_key or f"taskrun-python-{uuid.uuid4()}"}
    return Call("POST", "/v1/runs", params, body, headers, retry=True, timeout=params.get("wait_timeout"))


def _wait_call(run_id: str, seconds: float) -> Call:
    seconds = max(0.0, min(seconds, SERVER_WAIT_CAP))
    return Call(
        "GET", f"/v1/runs/{run_id}", {"wait": True, "wait_timeout": round(seconds, 3)}, retry=True, timeout=seconds
    )


def _runs_query(
    task_id: str | None,
    status: str | None,
    triggered_by: str | None,
    schedule_id: str | None,
    page_size: int,
    tag: str | None = None,
) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "status": status,
        "triggered_by": triggered_by,
        "schedule_id": schedule_id,
        "tag": tag,
        "limit": page_size,
    }


def _rerun_call(run_id: str, revision: str | None, wait: float | None) -> Call:
    params = {"wait": True, "wait_timeout": min(wait, SERVER_WAIT_CAP)} if wait else {}
    body = {"revision": revision} if revision is not None else {}
    return Call("POST", f"/v1/runs/{run_id}/rerun", params, body, timeout=params.get("wait_timeout"))


def _batch_call(requests: list[dict[str, Any]], idempotency_key: str | None) -> Call:
    """A batch, sent again after a transport error or 429/5xx under one Idempotency-Key."""
    headers = {"Idempotency-Key": idempotency_key or f"taskrun-python-{uuid.uuid4()}"}
    return Call("POST", "/v1/runs/batch", json={"runs": requests}, headers=headers, retry=True)


def _schedule_body(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _local_key(base: str) -> str | None:
    """The key `taskrun local` keeps in `.taskrun/api-key` of this folder, for a stack on
    this machine (a loopback address) when no key was given."""
    if urlsplit(base).hostname not in LOOPBACK_HOSTS:
        return None
    kept = Path(LOCAL_KEY_FILE)
    try:
        return kept.read_text().strip() or None
    except OSError:  # no local stack's state here
        return None


# The models of schedules, deliveries, files and flow steps live beside the server's code of
# them (boto3, jsonschema): each is imported when a client first reads one, so that the
# client, and every command of the CLI, starts without them.


def _schedule(data: Any) -> ScheduleView:
    from taskrun.schedules import ScheduleView

    return ScheduleView.model_validate(data)


def _schedules(data: Any) -> ScheduleList:
    from taskrun.schedules import ScheduleList

    return ScheduleList.model_validate(data)


def _deliveries(data: Any) -> DeliveryList:
    from taskrun.deliveries import DeliveryList

    return DeliveryList.model_validate(data)


def _upload(data: Any) -> Upload:
    from taskrun.files import Upload

    return Upload.model_validate(data)


def _steps(data: Any) -> list[FlowStep]:
    from taskrun.flows import FlowStep

    return TypeAdapter(list[FlowStep]).validate_python(data)


T = TypeVar("T")
# An exchange: the requests a method makes one after another, each answer sent back into it,
# its return value the method's. Written once, carried out by either client.
Exchange = Generator[Call, Any, T]


def _again(call: Call, attempt: int, retries: int, response: httpx.Response | None) -> bool:
    """Whether to send a call again after a transport error (no response) or a 429 or 5xx
    answer: only a call safe to repeat, while attempts remain."""
    return call.retry and attempt < retries and (response is None or response.status_code in RETRIED_STATUSES)


def _started(call: Call, wait: float | None) -> Exchange[RunView]:
    started = time.monotonic()
    run = RunView.model_validate((yield call))
    if wait and not run.is_done:
        return (yield from _waited(run.run_id, wait - (time.monotonic() - started)))
    return run


def _waited(run_id: str, timeout: float) -> Exchange[RunView]:
    deadline = time.monotonic() + timeout
    while True:
        run = RunView.model_validate((yield _wait_call(run_id, deadline - time.monotonic())))
        if run.is_done or time.monotonic() >= deadline:
            return run


def _next_page(params: dict[str, Any], page: dict[str, Any]) -> dict[str, Any] | None:
    """The query of a list's next page, or None after the last."""
    cursor = page.get("next_cursor")
    return {**params, "cursor": cursor} if cursor else None


def _upload_call(data: bytes, filename: str, content_type: str) -> Call:
    return Call("POST", "/v1/files", json={"filename": filename, "content_type": content_type, "size": len(data)})


def _uploaded(filename: str, put: httpx.Response) -> None:
    if put.status_code >= 300:
        raise TaskrunError(f"the upload of {filename} failed: {put.status_code} {put.text[:300]}")


class Client:
    """The taskrun API over HTTP, one call at a time (thread-safe, as httpx.Client is)."""

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url, headers = _settings(url, key)
        self.retries = retries
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    @property
    def key(self) -> str | None:
        """The API key the client sends (given, TASKRUN_API_KEY, or the local stack's)."""
        return self._http.headers.get("X-API-KEY")

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call) -> Any:
        for attempt in count():
            response: httpx.Response | None = None
            try:
                response = self._http.send(call.request(self._http))
            except httpx.TransportError:
                if not _again(call, attempt, self.retries, None):
                    raise
            else:
                if not _again(call, attempt, self.retries, response):
                    return _read(response)
            time.sleep(_pause(attempt, response))

    def _carry_out(self, exchange: Exchange[T]) -> T:
        try:
            call = next(exchange)
            while True:
                call = exchange.send(self._send(call))
        except StopIteration as done:
            return done.value

    def _pages(self, path: str, params: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
        """Every page of a list, each asked for with the cursor of the one before."""
        while params is not None:
            page = self._send(Call("GET", path, params, retry=True))
            yield page
            params = _next_page(params, page)

    # runs
    def run(
        self,
        task_id: str,
        arguments: dict[str, Any] | None = None,
        *,
        wait: float | None = None,
        revision: str | None = None,
        webhook_url: str | None = None,
        json_schema: dict[str, Any] | None = None,
        cache: bool = True,
        idempotency_key: str | None = None,
        tags: list[str] | None = None,
        delay: float | None = None,
        run_at: datetime | str | None = None,
        ttl: float | None = None,
        concurrency_key: str | None = None,
    ) -> RunView:
        """Start a run. With `wait` (seconds), wait up to that long for it to end, past the
        server's per-request cap; the run is answered as it stands when the time is up.
        `delay` (seconds) or `run_at` start it later (queued until then); `ttl` (seconds)
        ends it expired if it has not started by then; `concurrency_key` counts it against
        the task's per-key limit."""
        fields: dict[str, Any] = dict(revision=revision, webhook_url=webhook_url, json_schema=json_schema, cache=cache)
        fields |= dict(tags=tags, delay=delay, run_at=run_at, ttl=ttl, concurrency_key=concurrency_key)
        return self._carry_out(_started(_run_call(task_id, arguments, wait, fields, idempotency_key), wait))

    def rerun(self, run_id: str, *, revision: str | None = None, wait: float | None = None) -> RunView:
        """A new run of a run's task and arguments (the same revision, or `revision`:
        "current" for the traffic weights'); with `wait`, waited for as `run` waits."""
        return self._carry_out(_started(_rerun_call(run_id, revision, wait), wait))

    def batch(self, requests: list[dict[str, Any]], *, idempotency_key: str | None = None) -> list[BatchItem]:
        """Start up to 100 runs (each a POST /v1/runs body): each one's status and run or
        problem, in order. Sent once under one Idempotency-Key, even when retried."""
        return BatchAnswer.model_validate(self._send(_batch_call(requests, idempotency_key))).runs

    def get_run(self, run_id: str) -> RunView:
        return RunView.model_validate(self._send(Call("GET", f"/v1/runs/{run_id}", retry=True)))

    def wait_for(self, run_id: str, timeout: float) -> RunView:
        """The run once it has ended, or as it stands after `timeout` seconds: as many waiting
        requests as that takes, each within the server's cap."""
        return self._carry_out(_waited(run_id, timeout))

    def list_runs(
        self,
        *,
        task_id: str | None = None,
        status: str | None = None,
        triggered_by: str | None = None,
        schedule_id: str | None = None,
        tag: str | None = None,
        page_size: int = 100,
    ) -> Iterator[RunSummary]:
        """Runs, newest first, every page of them as the iteration goes on."""
        query = _runs_query(task_id, status, triggered_by, schedule_id, page_size, tag)
        for page in self._pages("/v1/runs", query):
            yield from RunList.model_validate(page).runs

    def cancel(self, run_id: str) -> RunView:
        return RunView.model_validate(self._send(Call("POST", f"/v1/runs/{run_id}/cancel")))

    def history(self, run_id: str) -> Iterator[FlowStep]:
        """A flow run's steps, every page of them."""
        for page in self._pages(f"/v1/runs/{run_id}/history", {"limit": 500}):
            yield from _steps(page["steps"])

    def logs(self, run_id: str, cursor: str | None = None) -> RunLogs:
        """A run's logs (the last 64 KB); with the `cursor` of an earlier answer, what came after it."""
        call = Call("GET", f"/v1/runs/{run_id}/logs", params={"cursor": cursor}, retry=True)
        return RunLogs.model_validate(self._send(call))

    def follow_logs(self, run_id: str, every: float = FOLLOW_SECONDS) -> Iterator[RunLogs]:
        """A run's logs as they come: what it has printed so far, then each new part, read every
        `every` seconds, until the run has ended and the last of them has come."""
        logs = self.logs(run_id)
        yield logs
        while not logs.ended:
            time.sleep(every)
            logs = self.logs(run_id, logs.cursor)
            if logs.text or logs.ended:
                yield logs

    def deliveries(self, run_id: str) -> list[Delivery]:
        answer = self._send(Call("GET", f"/v1/runs/{run_id}/deliveries", retry=True))
        return _deliveries(answer).deliveries

    # tasks
    def tasks(self) -> list[TaskInfo]:
        return TaskList.model_validate(self._send(Call("GET", "/v1/tasks", retry=True))).tasks

    def task(self, task_id: str) -> TaskInfo:
        return TaskInfo.model_validate(self._send(Call("GET", f"/v1/tasks/{task_id}", retry=True)))

    # schedules
    def create_schedule(self, task_id: str, expression: str, **fields: Any) -> ScheduleView:
        body = _schedule_body({"task_id": task_id, "expression": expression, **fields})
        return _schedule(self._send(Call("POST", "/v1/schedules", json=body)))

    def schedules(self, *, task_id: str | None = None) -> Iterator[ScheduleView]:
        for page in self._pages("/v1/schedules", {"task_id": task_id, "limit": 100}):
            yield from _schedules(page).schedules

    def get_schedule(self, schedule_id: str) -> ScheduleView:
        return _schedule(self._send(Call("GET", f"/v1/schedules/{schedule_id}", retry=True)))

    def update_schedule(self, schedule_id: str, **changes: Any) -> ScheduleView:
        answer = self._send(Call("PATCH", f"/v1/schedules/{schedule_id}", json=changes))
        return _schedule(answer)

    def delete_schedule(self, schedule_id: str) -> None:
        self._send(Call("DELETE", f"/v1/schedules/{schedule_id}", retry=True))

    def execute_schedule(self, schedule_id: str) -> RunView:
        return RunView.model_validate(self._send(Call("POST", f"/v1/schedules/{schedule_id}/execute", json={})))

    # files
    def upload(self, data: bytes, filename: str, content_type: str = "application/octet-stream") -> Upload:
        """Make a file for a File parameter and upload its bytes; the argument is `{"file_id": upload.file_id}`."""
        upload = _upload(self._send(_upload_call(data, filename, content_type)))
        _uploaded(filename, httpx.put(upload.upload_url, content=data, headers=upload.upload_headers, timeout=300))
        return upload

    # keys (admin scope)
    def create_key(
        self, name: str = "", scopes: list[str] | None = None, tasks: list[str] | None = None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name} | ({"scopes": scopes} if scopes is not None else {})
        body |= {"tasks": tasks} if tasks else {}
        answer: dict[str, Any] = self._send(Call("POST", "/v1/keys", json=body))
        return answer

    def keys(self) -> list[dict[str, Any]]:
        answer: list[dict[str, Any]] = self._send(Call("GET", "/v1/keys", retry=True))["keys"]
        return answer

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        answer: dict[str, Any] = self._send(Call("DELETE", f"/v1/keys/{key_id}", retry=True))
        return answer

    def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = self._send(Call("GET", "/v1/health", retry=True))
        return answer


class AsyncClient:
    """The same client for asyncio: the same methods, awaited (the lists iterate with `async for`)."""

    def __init__(
        self,
        url: str | None = None,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url, headers = _settings(url, key)
        self.retries = retries
        self._http = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=timeout, transport=transport)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call) -> Any:
        for attempt in count():
            response: httpx.Response | None = None
            try:
                response = await self._http.send(call.request(self._http))
            except httpx.TransportError:
                if not _again(call, attempt, self.retries, None):
                    raise
            else:
                if not _again(call, attempt, self.retries, response):
                    return _read(response)
            await asyncio.sleep(_pause(attempt, response))

    async def _carry_out(self, exchange: Exchange[T]) -> T:
        try:
            call = next(exchange)
            while True:
                call = exchange.send(await self._send(call))
        except StopIteration as done:
            return done.value

    async def _pages(self, path: str, params: dict[str, Any] | None) -> AsyncIterator[dict[str, Any]]:
        while params is not None:
            page = await self._send(Call("GET", path, params, retry=True))
            yield page
            params = _next_page(params, page)

    async def run(
        self,
        task_id: str,
        arguments: dict[str, Any] | None = None,
        *,
        wait: float | None = None,
        revision: str | None = None,
        webhook_url: str | None = None,
        json_schema: dict[str, Any] | None = None,
        cache: bool = True,
        idempotency_key: str | None = None,
        tags: list[str] | None = None,
        delay: float | None = None,
        run_at: datetime | str | None = None,
        ttl: float | None = None,
        concurrency_key: str | None = None,
    ) -> RunView:
        fields: dict[str, Any] = dict(revision=revision, webhook_url=webhook_url, json_schema=json_schema, cache=cache)
        fields |= dict(tags=tags, delay=delay, run_at=run_at, ttl=ttl, concurrency_key=concurrency_key)
        return await self._carry_out(_started(_run_call(task_id, arguments, wait, fields, idempotency_key), wait))

    async def rerun(self, run_id: str, *, revision: str | None = None, wait: float | None = None) -> RunView:
        return await self._carry_out(_started(_rerun_call(run_id, revision, wait), wait))

    async def batch(self, requests: list[dict[str, Any]], *, idempotency_key: str | None = None) -> list[BatchItem]:
        return BatchAnswer.model_validate(await self._send(_batch_call(requests, idempotency_key))).runs

    async def get_run(self, run_id: str) -> RunView:
        return RunView.model_validate(await self._send(Call("GET", f"/v1/runs/{run_id}", retry=True)))

    async def wait_for(self, run_id: str, timeout: float) -> RunView:
        return await self._carry_out(_waited(run_id, timeout))

    async def list_runs(
        self,
        *,
        task_id: str | None = None,
        status: str | None = None,
        triggered_by: str | None = None,
        schedule_id: str | None = None,
        tag: str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[RunSummary]:
        query = _runs_query(task_id, status, triggered_by, schedule_id, page_size, tag)
        async for page in self._pages("/v1/runs", query):
            for run in RunList.model_validate(page).runs:
                yield run

    async def cancel(self, run_id: str) -> RunView:
        return RunView.model_validate(await self._send(Call("POST", f"/v1/runs/{run_id}/cancel")))

    async def history(self, run_id: str) -> AsyncIterator[FlowStep]:
        async for page in self._pages(f"/v1/runs/{run_id}/history", {"limit": 500}):
            for step in _steps(page["steps"]):
                yield step

    async def logs(self, run_id: str, cursor: str | None = None) -> RunLogs:
        call = Call("GET", f"/v1/runs/{run_id}/logs", params={"cursor": cursor}, retry=True)
        return RunLogs.model_validate(await self._send(call))

    async def follow_logs(self, run_id: str, every: float = FOLLOW_SECONDS) -> AsyncIterator[RunLogs]:
        """As Client.follow_logs."""
        logs = await self.logs(run_id)
        yield logs
        while not logs.ended:
            await asyncio.sleep(every)
            logs = await self.logs(run_id, logs.cursor)
            if logs.text or logs.ended:
                yield logs

    async def tasks(self) -> list[TaskInfo]:
        return TaskList.model_validate(await self._send(Call("GET", "/v1/tasks", retry=True))).tasks

    async def task(self, task_id: str) -> TaskInfo:
        return TaskInfo.model_validate(await self._send(Call("GET", f"/v1/tasks/{task_id}", retry=True)))

    async def get_schedule(self, schedule_id: str) -> ScheduleView:
        answer = await self._send(Call("GET", f"/v1/schedules/{schedule_id}", retry=True))
        return _schedule(answer)

    async def deliveries(self, run_id: str) -> list[Delivery]:
        answer = await self._send(Call("GET", f"/v1/runs/{run_id}/deliveries", retry=True))
        return _deliveries(answer).deliveries

    async def create_schedule(self, task_id: str, expression: str, **fields: Any) -> ScheduleView:
        body = _schedule_body({"task_id": task_id, "expression": expression, **fields})
        return _schedule(await self._send(Call("POST", "/v1/schedules", json=body)))

    async def schedules(self, *, task_id: str | None = None) -> AsyncIterator[ScheduleView]:
        async for page in self._pages("/v1/schedules", {"task_id": task_id, "limit": 100}):
            for schedule in _schedules(page).schedules:
                yield schedule

    async def update_schedule(self, schedule_id: str, **changes: Any) -> ScheduleView:
        answer = await self._send(Call("PATCH", f"/v1/schedules/{schedule_id}", json=changes))
        return _schedule(answer)

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._send(Call("DELETE", f"/v1/schedules/{schedule_id}", retry=True))

    async def execute_schedule(self, schedule_id: str) -> RunView:
        answer = await self._send(Call("POST", f"/v1/schedules/{schedule_id}/execute", json={}))
        return RunView.model_validate(answer)

    async def upload(self, data: bytes, filename: str, content_type: str = "application/octet-stream") -> Upload:
        upload = _upload(await self._send(_upload_call(data, filename, content_type)))
        async with httpx.AsyncClient(timeout=300) as storage:
            _uploaded(filename, await storage.put(upload.upload_url, content=data, headers=upload.upload_headers))
        return upload

    async def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._send(Call("GET", "/v1/health", retry=True))
        return answer
