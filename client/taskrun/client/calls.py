"""What the sync and async clients share: each request as a `Call`, and each method as an
exchange of calls, written once and carried out by either client; the settings, retries and
the models read lazily."""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import TypeAdapter

from taskrun import __version__
from taskrun.models import RunView

if TYPE_CHECKING:
    from taskrun.flows.callbacks import Callback, CallbackList
    from taskrun.flows.stepfunctions import FlowStep
    from taskrun.results.files import Upload
    from taskrun.schedules.models import ScheduleList, ScheduleView
    from taskrun.webhooks.records import DeliveryList
from taskrun.client import DEFAULT_URL
from taskrun.client.errors import TaskrunError, problem_error

SERVER_WAIT_CAP = 25.0  # seconds one request may wait on the server (the stack's MaxWaitSeconds)
RETRIED_STATUSES = {429, 502, 503, 504}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
LOCAL_KEY_FILE = ".taskrun/api-key"  # where `taskrun local` keeps its key (taskrun.local.stack)
FOLLOW_SECONDS = 1.0  # how often following a run reads its new logs


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
        params = {name: param(value) for name, value in self.params.items() if value is not None}
        request = client.build_request(self.method, self.path, params=params, json=self.json, headers=self.headers)
        if self.timeout is not None:  # a request that waits on the server gets that long to be answered
            seconds = self.timeout + 30
            request.extensions["timeout"] = httpx.Timeout(seconds).as_dict()
        return request


def param(value: Any) -> Any:
    return ("true" if value else "false") if isinstance(value, bool) else value


def pause(attempt: int, response: httpx.Response | None) -> float:
    """Seconds before another attempt: Retry-After when the API says, else backoff with jitter."""
    if response is not None:
        try:
            return min(30.0, float(response.headers.get("Retry-After", "")))
        except ValueError:
            pass
    return min(8.0, 0.25 * 2**attempt) * random.uniform(0.5, 1.0)


def read(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise problem_error(response)
    return response.json() if response.content else None


def settings(url: str | None, key: str | None) -> tuple[str, dict[str, str]]:
    base = (url or os.environ.get("TASKRUN_URL") or DEFAULT_URL).rstrip("/")
    headers = {"User-Agent": f"taskrun-python/{__version__}"}
    secret = key or os.environ.get("TASKRUN_API_KEY") or local_key(base)
    if secret:
        headers["X-API-KEY"] = secret
    return base, headers


def run_call(
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


def wait_call(run_id: str, seconds: float) -> Call:
    seconds = max(0.0, min(seconds, SERVER_WAIT_CAP))
    return Call(
        "GET", f"/v1/runs/{run_id}", {"wait": True, "wait_timeout": round(seconds, 3)}, retry=True, timeout=seconds
    )


def runs_query(
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


def rerun_call(run_id: str, revision: str | None, wait: float | None) -> Call:
    params = {"wait": True, "wait_timeout": min(wait, SERVER_WAIT_CAP)} if wait else {}
    body = {"revision": revision} if revision is not None else {}
    return Call("POST", f"/v1/runs/{run_id}/rerun", params, body, timeout=params.get("wait_timeout"))


def batch_call(requests: list[dict[str, Any]], idempotency_key: str | None) -> Call:
    """A batch, sent again after a transport error or 429/5xx under one Idempotency-Key."""
    headers = {"Idempotency-Key": idempotency_key or f"taskrun-python-{uuid.uuid4()}"}
    return Call("POST", "/v1/runs/batch", json={"runs": requests}, headers=headers, retry=True)


def schedule_body(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def local_key(base: str) -> str | None:
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


def schedule(data: Any) -> ScheduleView:
    from taskrun.schedules.models import ScheduleView

    return ScheduleView.model_validate(data)


def schedules(data: Any) -> ScheduleList:
    from taskrun.schedules.models import ScheduleList

    return ScheduleList.model_validate(data)


def deliveries(data: Any) -> DeliveryList:
    from taskrun.webhooks.records import DeliveryList

    return DeliveryList.model_validate(data)


def callbacks(data: Any) -> CallbackList:
    from taskrun.flows.callbacks import CallbackList

    return CallbackList.model_validate(data)


def callback(data: Any) -> Callback:
    from taskrun.flows.callbacks import Callback

    return Callback.model_validate(data)


def callback_answer(output: Any, error: str | None, cause: str | None) -> dict[str, Any]:
    """The body that completes a callback: its output, or (with `error`) a failure."""
    if error is not None:
        return {"error": error, **({"cause": cause} if cause is not None else {})}
    return {"output": output}


def upload(data: Any) -> Upload:
    from taskrun.results.files import Upload

    return Upload.model_validate(data)


def steps(data: Any) -> list[FlowStep]:
    from taskrun.flows.stepfunctions import FlowStep

    return TypeAdapter(list[FlowStep]).validate_python(data)


T = TypeVar("T")
# An exchange: the requests a method makes one after another, each answer sent back into it,
# its return value the method's. Written once, carried out by either client.
Exchange = Generator[Call, Any, T]


def again(call: Call, attempt: int, retries: int, response: httpx.Response | None) -> bool:
    """Whether to send a call again after a transport error (no response) or a 429 or 5xx
    answer: only a call safe to repeat, while attempts remain."""
    return call.retry and attempt < retries and (response is None or response.status_code in RETRIED_STATUSES)


def started(call: Call, wait: float | None) -> Exchange[RunView]:
    started = time.monotonic()
    run = RunView.model_validate((yield call))
    if wait and not run.is_done:
        return (yield from waited(run.run_id, wait - (time.monotonic() - started)))
    return run


def waited(run_id: str, timeout: float) -> Exchange[RunView]:
    deadline = time.monotonic() + timeout
    while True:
        run = RunView.model_validate((yield wait_call(run_id, deadline - time.monotonic())))
        if run.is_done or time.monotonic() >= deadline:
            return run


def next_page(params: dict[str, Any], page: dict[str, Any]) -> dict[str, Any] | None:
    """The query of a list's next page, or None after the last."""
    cursor = page.get("next_cursor")
    return {**params, "cursor": cursor} if cursor else None


def upload_call(data: bytes, filename: str, content_type: str) -> Call:
    return Call("POST", "/v1/files", json={"filename": filename, "content_type": content_type, "size": len(data)})


def uploaded(filename: str, put: httpx.Response) -> None:
    if put.status_code >= 300:
        raise TaskrunError(f"the upload of {filename} failed: {put.status_code} {put.text[:300]}")
