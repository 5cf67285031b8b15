"""The Python client (taskrun.client) against the local stack."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from taskrun.client import AsyncClient, Client, Invalid, NotFound, Unauthorized
from taskrun.models import RunStatus, RunView
from tests.conftest import API_KEY


class Recording(httpx.HTTPTransport):
    """The real transport, remembering each request; it may lose the first answer to a request."""

    def __init__(self, lose_first: str | None = None) -> None:
        super().__init__()
        self.sent: list[httpx.Request] = []
        self.lost: list[dict[str, Any]] = []
        self._lose = lose_first

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append(request)
        response = super().handle_request(request)
        if self._lose and f"{request.method} {request.url.path}" == self._lose:
            self._lose = None
            response.read()
            self.lost.append(json.loads(response.content))
            raise httpx.ReadError("the connection dropped before the answer arrived", request=request)
        return response


def test_run_waits_past_the_servers_cap_and_answers_the_apis_model(base_url: str, short_server_waits: None) -> None:
    transport = Recording()
    with Client(base_url, API_KEY, transport=transport) as client:
        # When a run of about 4.5 s is waited on with a server that waits 1 s a request (long
        # enough past the first two answers that a slow start of a sandbox cannot hide a round)
        run = client.run("examples/sleep", {"seconds": 4.5}, wait=30)
    # Then the client kept asking until it ended, and answers the API's own model
    assert isinstance(run, RunView) and run.status is RunStatus.SUCCEEDED
    waits = [r for r in transport.sent if r.method == "GET" and r.url.params.get("wait") == "true"]
    assert len(waits) >= 2
    assert all(float(r.url.params["wait_timeout"]) <= 25 for r in waits)


def test_wait_for_answers_the_run_as_it_stands_when_the_time_is_up(base_url: str, short_server_waits: None) -> None:
    with Client(base_url, API_KEY) as client:
        started = client.run("examples/sleep", {"seconds": 5})
        assert started.status in (RunStatus.PENDING, RunStatus.RUNNING)
        stood = client.wait_for(started.run_id, timeout=1.5)
        assert not stood.is_done
        assert client.cancel(started.run_id).status is RunStatus.CANCELLED


def test_errors_are_typed_and_carry_the_problem(base_url: str) -> None:
    with Client(base_url, API_KEY) as client:
        with pytest.raises(NotFound) as missing:
            client.task("nope/none")
        assert missing.value.status == 404 and missing.value.problem["detail"] == "no task named 'nope/none'"
        with pytest.raises(Invalid) as invalid:
            client.run("team/add", {"a": "four"})
        assert invalid.value.errors[0]["location"] == "body.arguments.a"
    with Client(base_url, "trk_wrong") as stranger, pytest.raises(Unauthorized):
        stranger.tasks()


def test_a_run_whose_answer_was_lost_is_asked_again_and_not_started_twice(base_url: str) -> None:
    # Given a connection that drops the answer to the first POST /v1/runs
    transport = Recording(lose_first="POST /v1/runs")
    with Client(base_url, API_KEY, transport=transport) as client:
        run = client.run("team/add", {"a": 40, "b": 2}, wait=10)
    # Then the client sent it again with the same Idempotency-Key and got the first run
    posts = [r for r in transport.sent if r.method == "POST"]
    assert len(posts) == 2 and posts[0].headers["Idempotency-Key"] == posts[1].headers["Idempotency-Key"]
    assert run.run_id == transport.lost[0]["run_id"] and run.result == 42


def test_lists_iterate_over_every_page(base_url: str) -> None:
    with Client(base_url, API_KEY) as client:
        made = {client.run("team/add", {"a": n, "b": 1000}).run_id for n in range(5)}
        listed = [run.run_id for run in client.list_runs(task_id="team/add", page_size=2)]
        assert made <= set(listed) and len(listed) == len(set(listed))
        assert [task.task_id for task in client.tasks()] == sorted(task.task_id for task in client.tasks())
        assert client.task("examples/greet").parameters["required"] == ["name"]


def test_flow_history_logs_schedules_and_files(base_url: str) -> None:
    with Client(base_url, API_KEY) as client:
        flow = client.run("team/relay", {"size": 7}, wait=30)
        assert flow.status is RunStatus.SUCCEEDED
        steps = list(client.history(flow.run_id))
        assert [step.name for step in steps if step.type == "Task"] == ["Produce", "Measure"]
        assert client.logs(flow.run_id).text == "--- step team/blob ---\nmaking 7 characters\n"
        schedule = client.create_schedule("team/add", "rate(1 day)", arguments={"a": 1})
        assert client.get_schedule(schedule.schedule_id).expression == "rate(1 day)"
        assert client.update_schedule(schedule.schedule_id, enabled=False).state.value == "disabled"
        assert schedule.schedule_id in {item.schedule_id for item in client.schedules(task_id="team/add")}
        ran = client.execute_schedule(schedule.schedule_id)
        assert client.wait_for(ran.run_id, 10).result == 1
        client.delete_schedule(schedule.schedule_id)
        with pytest.raises(NotFound):
            client.get_schedule(schedule.schedule_id)
        upload = client.upload(b"hello file", "note.txt", "text/plain")
        measured = client.run("files/measure", {"upload": {"file_id": upload.file_id}}, wait=10)
        assert measured.result["name"] == "note.txt" and measured.result["size"] == 10


def test_the_async_client_does_the_same(base_url: str, short_server_waits: None) -> None:
    async def scenario() -> tuple[RunView, list[str], str]:
        async with AsyncClient(base_url, API_KEY) as client:
            run = await client.run("examples/sleep", {"seconds": 1.5}, wait=20)
            failed = await client.run("noisy/fail", {"number": 9}, wait=20)
            listed = [item.run_id async for item in client.list_runs(task_id="noisy/fail", page_size=1)]
            logs = await client.logs(failed.run_id)
            assert (await client.get_run(run.run_id)).run_id == run.run_id
            return run, listed, logs.text

    run, listed, text = asyncio.run(scenario())
    assert run.status is RunStatus.SUCCEEDED
    assert listed and "ValueError: 9 is too many" in text
