"""`AsyncClient`: the API over an asynchronous httpx client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
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
        self.url, headers = calls.settings(url, key)
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
                if not calls.again(call, attempt, self.retries, None):
                    raise
            else:
                if not calls.again(call, attempt, self.retries, response):
                    return calls.read(response)
            await asyncio.sleep(calls.pause(attempt, response))

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
            params = calls.next_page(params, page)

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
        return await self._carry_out(
            calls.started(calls.run_call(task_id, arguments, wait, fields, idempotency_key), wait)
        )

    async def rerun(self, run_id: str, *, revision: str | None = None, wait: float | None = None) -> RunView:
        return await self._carry_out(calls.started(calls.rerun_call(run_id, revision, wait), wait))

    async def batch(self, requests: list[dict[str, Any]], *, idempotency_key: str | None = None) -> list[BatchItem]:
        return BatchAnswer.model_validate(await self._send(calls.batch_call(requests, idempotency_key))).runs

    async def get_run(self, run_id: str) -> RunView:
        return RunView.model_validate(await self._send(Call("GET", f"/v1/runs/{run_id}", retry=True)))

    async def wait_for(self, run_id: str, timeout: float) -> RunView:
        return await self._carry_out(calls.waited(run_id, timeout))

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
        query = calls.runs_query(task_id, status, triggered_by, schedule_id, page_size, tag)
        async for page in self._pages("/v1/runs", query):
            for run in RunList.model_validate(page).runs:
                yield run

    async def cancel(self, run_id: str) -> RunView:
        return RunView.model_validate(await self._send(Call("POST", f"/v1/runs/{run_id}/cancel")))

    async def history(self, run_id: str) -> AsyncIterator[FlowStep]:
        async for page in self._pages(f"/v1/runs/{run_id}/history", {"limit": 500}):
            for step in calls.steps(page["steps"]):
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
        return (await self.catalog()).tasks

    async def catalog(self) -> TaskList:
        """The tasks, and (locally, to a key that sees every task) the task modules that did not import."""
        return TaskList.model_validate(await self._send(Call("GET", "/v1/tasks", retry=True)))

    async def task(self, task_id: str) -> TaskInfo:
        return TaskInfo.model_validate(await self._send(Call("GET", f"/v1/tasks/{task_id}", retry=True)))

    async def get_schedule(self, schedule_id: str) -> ScheduleView:
        answer = await self._send(Call("GET", f"/v1/schedules/{schedule_id}", retry=True))
        return calls.schedule(answer)

    async def deliveries(self, run_id: str) -> list[Delivery]:
        answer = await self._send(Call("GET", f"/v1/runs/{run_id}/deliveries", retry=True))
        return calls.deliveries(answer).deliveries

    async def callbacks(self, run_id: str) -> list[Callback]:
        """The callbacks a flow run made: the waiting ones are what it waits for."""
        answer = await self._send(Call("GET", f"/v1/runs/{run_id}/callbacks", retry=True))
        return calls.callbacks(answer).callbacks

    async def answer_callback(
        self, run_id: str, callback_id: str, output: Any = None, *, error: str | None = None, cause: str | None = None
    ) -> Callback:
        """Complete a waiting callback with `output`, or fail it with `error` (and `cause`)."""
        body = calls.callback_answer(output, error, cause)
        return calls.callback(await self._send(Call("POST", f"/v1/runs/{run_id}/callbacks/{callback_id}", json=body)))

    async def create_schedule(self, task_id: str, expression: str, **fields: Any) -> ScheduleView:
        body = calls.schedule_body({"task_id": task_id, "expression": expression, **fields})
        return calls.schedule(await self._send(Call("POST", "/v1/schedules", json=body)))

    async def schedules(self, *, task_id: str | None = None) -> AsyncIterator[ScheduleView]:
        async for page in self._pages("/v1/schedules", {"task_id": task_id, "limit": 100}):
            for schedule in calls.schedules(page).schedules:
                yield schedule

    async def update_schedule(self, schedule_id: str, **changes: Any) -> ScheduleView:
        answer = await self._send(Call("PATCH", f"/v1/schedules/{schedule_id}", json=changes))
        return calls.schedule(answer)

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._send(Call("DELETE", f"/v1/schedules/{schedule_id}", retry=True))

    async def execute_schedule(self, schedule_id: str) -> RunView:
        answer = await self._send(Call("POST", f"/v1/schedules/{schedule_id}/execute", json={}))
        return RunView.model_validate(answer)

    async def upload(self, data: bytes, filename: str, content_type: str = "application/octet-stream") -> Upload:
        upload = calls.upload(await self._send(calls.upload_call(data, filename, content_type)))
        async with httpx.AsyncClient(timeout=300) as storage:
            calls.uploaded(filename, await storage.put(upload.upload_url, content=data, headers=upload.upload_headers))
        return upload

    async def health(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self._send(Call("GET", "/v1/health", retry=True))
        return answer
