"""`Client`: the API over a synchronous httpx client."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from itertools import count
from typing import TYPE_CHECKING, Any

import httpx

import taskrun.client.calls as calls
from taskrun.catalog.info import TaskInfo, TaskList
from taskrun.client.calls import FOLLOW_SECONDS, Call, Exchange, T
from taskrun.models import RunList, RunSummary, RunView
from taskrun.requests import BatchAnswer, BatchItem
from taskrun.results.tasklogs import RunLogs

if TYPE_CHECKING:
    from taskrun.flows.callbacks import Callback
    from taskrun.flows.stepfunctions import FlowStep
    from taskrun.results.files import Upload
    from taskrun.schedules.models import ScheduleView
    from taskrun.webhooks.records import Delivery


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
        self.url, headers = calls.settings(url, key)
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
                if not calls.again(call, attempt, self.retries, None):
                    raise
            else:
                if not calls.again(call, attempt, self.retries, response):
                    return calls.read(response)
            time.sleep(calls.pause(attempt, response))

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
            params = calls.next_page(params, page)

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
        return self._carry_out(calls.started(calls.run_call(task_id, arguments, wait, fields, idempotency_key), wait))

    def rerun(self, run_id: str, *, revision: str | None = None, wait: float | None = None) -> RunView:
        """A new run of a run's task and arguments (the same revision, or `revision`:
        "current" for the traffic weights'); with `wait`, waited for as `run` waits."""
        return self._carry_out(calls.started(calls.rerun_call(run_id, revision, wait), wait))

    def batch(self, requests: list[dict[str, Any]], *, idempotency_key: str | None = None) -> list[BatchItem]:
        """Start up to 100 runs (each a POST /v1/runs body): each one's status and run or
        problem, in order. Sent once under one Idempotency-Key, even when retried."""
        return BatchAnswer.model_validate(self._send(calls.batch_call(requests, idempotency_key))).runs

    def get_run(self, run_id: str) -> RunView:
        return RunView.model_validate(self._send(Call("GET", f"/v1/runs/{run_id}", retry=True)))

    def wait_for(self, run_id: str, timeout: float) -> RunView:
        """The run once it has ended, or as it stands after `timeout` seconds: as many waiting
        requests as that takes, each within the server's cap."""
        return self._carry_out(calls.waited(run_id, timeout))

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
        query = calls.runs_query(task_id, status, triggered_by, schedule_id, page_size, tag)
        for page in self._pages("/v1/runs", query):
            yield from RunList.model_validate(page).runs

    def cancel(self, run_id: str) -> RunView:
        return RunView.model_validate(self._send(Call("POST", f"/v1/runs/{run_id}/cancel")))

    def history(self, run_id: str) -> Iterator[FlowStep]:
        """A flow run's steps, every page of them."""
        for page in self._pages(f"/v1/runs/{run_id}/history", {"limit": 500}):
            yield from calls.steps(page["steps"])

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
        return calls.deliveries(answer).deliveries

    def callbacks(self, run_id: str) -> list[Callback]:
        """The callbacks a flow run made: the waiting ones are what it waits for."""
        answer = self._send(Call("GET", f"/v1/runs/{run_id}/callbacks", retry=True))
        return calls.callbacks(answer).callbacks

    def answer_callback(
        self, run_id: str, callback_id: str, output: Any = None, *, error: str | None = None, cause: str | None = None
    ) -> Callback:
        """Complete a waiting callback with `output`, or fail it with `error` (and `cause`)."""
        body = calls.callback_answer(output, error, cause)
        return calls.callback(self._send(Call("POST", f"/v1/runs/{run_id}/callbacks/{callback_id}", json=body)))

    # tasks
    def tasks(self) -> list[TaskInfo]:
        return (self.catalog()).tasks

    def catalog(self) -> TaskList:
        """The tasks, and (locally, to a key that sees every task) the task modules that did not import."""
        return TaskList.model_validate(self._send(Call("GET", "/v1/tasks", retry=True)))

    def task(self, task_id: str) -> TaskInfo:
        return TaskInfo.model_validate(self._send(Call("GET", f"/v1/tasks/{task_id}", retry=True)))

    # schedules
    def create_schedule(self, task_id: str, expression: str, **fields: Any) -> ScheduleView:
        body = calls.schedule_body({"task_id": task_id, "expression": expression, **fields})
        return calls.schedule(self._send(Call("POST", "/v1/schedules", json=body)))

    def schedules(self, *, task_id: str | None = None) -> Iterator[ScheduleView]:
        for page in self._pages("/v1/schedules", {"task_id": task_id, "limit": 100}):
            yield from calls.schedules(page).schedules

    def get_schedule(self, schedule_id: str) -> ScheduleView:
        return calls.schedule(self._send(Call("GET", f"/v1/schedules/{schedule_id}", retry=True)))

    def update_schedule(self, schedule_id: str, **changes: Any) -> ScheduleView:
        answer = self._send(Call("PATCH", f"/v1/schedules/{schedule_id}", json=changes))
        return calls.schedule(answer)

    def delete_schedule(self, schedule_id: str) -> None:
        self._send(Call("DELETE", f"/v1/schedules/{schedule_id}", retry=True))

    def execute_schedule(self, schedule_id: str) -> RunView:
        return RunView.model_validate(self._send(Call("POST", f"/v1/schedules/{schedule_id}/execute", json={})))

    # files
    def upload(self, data: bytes, filename: str, content_type: str = "application/octet-stream") -> Upload:
        """Make a file for a File parameter and upload its bytes; the argument is `{"file_id": upload.file_id}`."""
        upload = calls.upload(self._send(calls.upload_call(data, filename, content_type)))
        calls.uploaded(filename, httpx.put(upload.upload_url, content=data, headers=upload.upload_headers, timeout=300))
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
