"""Schedules through the local stack: the API, the stack's clock firing them with the event
EventBridge Scheduler sends, run now, and the schedule target's handler."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import httpx
import pytest

from taskrun.catalog.masking import MASK
from taskrun.local.stack import LocalStack
from taskrun.models import format_time
from tests.conftest import load_event
from tests.waiting import until

Invoke = Callable[[str, dict[str, Any]], Any]


def wall(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def create(api: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"task_id": "team/add", "arguments": {"a": 2, "b": 3}, **fields}
    response = api.post("/v1/schedules", json=body)
    assert response.status_code == 201, response.text
    schedule: dict[str, Any] = response.json()
    return schedule


def runs_of(api: httpx.Client, schedule_id: str) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = api.get("/v1/runs", params={"schedule_id": schedule_id, "limit": 100}).json()["runs"]
    return runs


def scheduler() -> Any:
    return boto3.client("scheduler", region_name="us-east-1")


def test_a_schedule_is_made_read_listed_changed_and_deleted_with_its_eventbridge_schedule(
    api: httpx.Client,
) -> None:
    # Made: weekdays at 09:00 in Paris
    made = create(api, expression="cron(0 9 ? * MON-FRI *)", timezone="Europe/Paris", description="daily sum")
    schedule_id = made["schedule_id"]
    assert made["state"] == "scheduled" and made["last_run"] is None
    next_run = datetime.fromisoformat(made["next_run_at"].replace("Z", "+00:00"))
    paris = next_run.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert (paris.hour, paris.minute) == (9, 0) and paris.isoweekday() <= 5
    group = "taskrun-local"  # the stack's own group
    on_aws = scheduler().get_schedule(Name=schedule_id, GroupName=group)
    assert on_aws["ScheduleExpression"] == "cron(0 9 ? * MON-FRI *)"
    assert on_aws["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert on_aws["FlexibleTimeWindow"] == {"Mode": "OFF"} and on_aws["State"] == "ENABLED"

    # Read and listed (all, and by task)
    assert api.get(f"/v1/schedules/{schedule_id}").json()["expression"] == "cron(0 9 ? * MON-FRI *)"
    assert schedule_id in {s["schedule_id"] for s in api.get("/v1/schedules").json()["schedules"]}
    by_task = api.get("/v1/schedules", params={"task_id": "team/add"}).json()["schedules"]
    assert schedule_id in {s["schedule_id"] for s in by_task}
    others = api.get("/v1/schedules", params={"task_id": "examples/greet"}).json()["schedules"]
    assert all(s["task_id"] == "examples/greet" for s in others)

    # Changed: disabled shows so, with no next run, and EventBridge's copy follows
    changed = api.patch(f"/v1/schedules/{schedule_id}", json={"enabled": False, "description": "paused"}).json()
    assert changed["state"] == "disabled" and changed["next_run_at"] is None and changed["description"] == "paused"
    assert scheduler().get_schedule(Name=schedule_id, GroupName=group)["State"] == "DISABLED"

    # Deleted: gone from the API and from EventBridge Scheduler
    assert api.delete(f"/v1/schedules/{schedule_id}").status_code == 204
    assert api.get(f"/v1/schedules/{schedule_id}").status_code == 404
    with pytest.raises(scheduler().exceptions.ResourceNotFoundException):
        scheduler().get_schedule(Name=schedule_id, GroupName=group)
    assert api.delete(f"/v1/schedules/{schedule_id}").status_code == 404


def test_a_one_off_a_few_seconds_ahead_fires_once_and_shows_done(api: httpx.Client) -> None:
    made = create(api, expression=f"at({wall(datetime.now(UTC) + timedelta(seconds=4))})")
    assert made["state"] == "scheduled" and made["next_run_at"]

    done = until(lambda: (s := api.get(f"/v1/schedules/{made['schedule_id']}").json())["state"] == "done" and s)
    assert done["last_run"]["status"] == "succeeded" and done["next_run_at"] is None
    time.sleep(1.5)
    (run,) = runs_of(api, made["schedule_id"])
    assert run["run_id"] == done["last_run"]["run_id"]
    assert run["triggered_by"] == "schedule" and run["schedule_id"] == made["schedule_id"]
    assert api.get(f"/v1/runs/{run['run_id']}").json()["result"] == 5


def test_a_recurring_schedule_fires_at_its_start_and_goes_on_at_its_rate(api: httpx.Client) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    made = create(api, expression="rate(1 minute)", start_at=format_time(start), arguments={"a": 7})
    assert made["next_run_at"] == format_time(start)

    (run,) = until(lambda: runs_of(api, made["schedule_id"]))
    assert run["triggered_by"] == "schedule"
    after = until(lambda: (s := api.get(f"/v1/schedules/{made['schedule_id']}").json())["last_run"] and s)
    assert after["next_run_at"] == format_time(start + timedelta(minutes=1))
    assert after["state"] in ("running", "scheduled")
    api.delete(f"/v1/schedules/{made['schedule_id']}")


def test_run_now_runs_a_future_one_off_at_once_and_it_never_fires_at_its_time(api: httpx.Client) -> None:
    made = create(api, expression=f"at({wall(datetime.now(UTC) + timedelta(days=30))})", tags=["nightly"])
    assert made["tags"] == ["nightly"]

    response = api.post(f"/v1/schedules/{made['schedule_id']}/execute", json={"arguments": {"b": 10}})

    assert response.status_code == 201
    run = response.json()
    assert run["triggered_by"] == "schedule" and run["schedule_id"] == made["schedule_id"]
    assert run["arguments"] == {"a": 2, "b": 10}
    assert run["tags"] == ["nightly"]  # the schedule's tags, on each of its runs
    ended = api.get(f"/v1/runs/{run['run_id']}", params={"wait": "true"}).json()
    assert ended["result"] == 12
    shown = api.get(f"/v1/schedules/{made['schedule_id']}").json()
    assert shown["state"] == "done" and shown["last_run"]["run_id"] == run["run_id"]
    assert shown["next_run_at"] is None
    group = "taskrun-local"  # the stack's own group
    assert scheduler().get_schedule(Name=made["schedule_id"], GroupName=group)["State"] == "DISABLED"
    # an empty body runs it with its own arguments
    again = api.post(f"/v1/schedules/{made['schedule_id']}/execute")
    assert again.status_code == 201 and again.json()["arguments"] == {"a": 2, "b": 3}


def test_a_disabled_schedule_does_not_fire(api: httpx.Client) -> None:
    made = create(api, expression=f"at({wall(datetime.now(UTC) + timedelta(seconds=3))})", enabled=False)
    assert made["state"] == "disabled"
    time.sleep(4)  # past its time
    assert runs_of(api, made["schedule_id"]) == []
    assert api.get(f"/v1/schedules/{made['schedule_id']}").json()["last_run"] is None


def test_the_target_starts_one_run_per_firing_and_skips_while_the_last_runs_if_asked(
    api: httpx.Client, invoke: Invoke
) -> None:
    made = create(
        api,
        task_id="team/nap",
        arguments={"seconds": 3},
        expression=f"at({wall(datetime.now(UTC) + timedelta(days=30))})",
        overlap="skip",
    )
    event = load_event("schedule_target")
    event["schedule_id"] = made["schedule_id"]
    event["scheduled_time"] = format_time(datetime.now(UTC))

    first = invoke("ScheduleTargetFunction", event)
    assert first["run_id"]
    # the same firing delivered again (EventBridge Scheduler delivers at least once): no second run
    assert invoke("ScheduleTargetFunction", event) == {"run_id": None}
    assert len(runs_of(api, made["schedule_id"])) == 1
    assert api.get(f"/v1/schedules/{made['schedule_id']}").json()["state"] == "running"


def test_a_recurring_firing_while_the_last_run_goes_on_is_skipped_with_overlap_skip(
    api: httpx.Client, invoke: Invoke
) -> None:
    made = create(api, task_id="team/nap", arguments={"seconds": 3}, expression="rate(1 day)", overlap="skip")
    event = load_event("schedule_target") | {"schedule_id": made["schedule_id"]}
    now = datetime.now(UTC)
    assert invoke("ScheduleTargetFunction", event | {"scheduled_time": format_time(now)})["run_id"]
    later = format_time(now + timedelta(seconds=1))
    assert invoke("ScheduleTargetFunction", event | {"scheduled_time": later}) == {"run_id": None}
    assert len(runs_of(api, made["schedule_id"])) == 1


def test_a_schedule_declared_in_the_template_runs_under_its_name(api: httpx.Client, invoke: Invoke) -> None:
    answer = invoke("ScheduleTargetFunction", load_event("schedule_target_declared"))
    run = api.get(f"/v1/runs/{answer['run_id']}").json()
    assert run["task_id"] == "examples/greet" and run["triggered_by"] == "schedule"
    assert run["schedule_id"] == "examples-daily-greeting"
    assert answer["run_id"] in {r["run_id"] for r in runs_of(api, "examples-daily-greeting")}


def test_a_schedule_of_an_unknown_task_is_404_and_moving_one_to_it_422(api: httpx.Client) -> None:
    body = {"task_id": "no/such-task", "expression": "rate(5 minutes)"}
    made = api.post("/v1/schedules", json=body)
    assert made.status_code == 404 and "no/such-task" in made.json()["detail"]
    schedule = api.post("/v1/schedules", json={**body, "task_id": "team/add", "arguments": {"a": 1}}).json()
    moved = api.patch(f"/v1/schedules/{schedule['schedule_id']}", json={"task_id": "no/such-task"})
    assert moved.status_code == 422 and moved.json()["errors"][0]["location"] == "body.task_id"
    api.delete(f"/v1/schedules/{schedule['schedule_id']}")


@pytest.mark.parametrize(
    ("fields", "location"),
    [
        ({"expression": "cron(bogus)"}, "body.expression"),
        ({"expression": "rate(0 minutes)"}, "body.expression"),
        ({"expression": "rate(5 minute)"}, "body.expression"),
        ({"expression": "cron(0 9 1 * MON *)"}, "body.expression"),  # both day fields set
        ({"expression": "cron(0 9 30 2 ? *)"}, "body.expression"),  # never fires
        ({"expression": "at(2020-01-01T00:00:00)"}, "body.expression"),  # in the past
        ({"expression": "at(2026-13-45T99:00:00)"}, "body.expression"),
        ({"expression": "every day"}, "body.expression"),
        ({"expression": "cron(" + "1," * 200 + ")"}, "body.expression"),
        ({"expression": "rate(5 minutes)", "timezone": "Mars/Olympus"}, "body.timezone"),
        ({"expression": "rate(5 minutes)", "timezone": "../../etc/passwd"}, "body.timezone"),
        ({"expression": "rate(5 minutes)", "arguments": {"a": "two"}}, "body.arguments.a"),
        ({"expression": "rate(5 minutes)", "overlap": "sometimes"}, "body.overlap"),
        ({"expression": "rate(5 minutes)", "colour": "red"}, "body.colour"),
        ({"expression": "rate(5 minutes)", "enabled": "yes please"}, "body.enabled"),
    ],
)
def test_a_schedule_that_cannot_be_is_422_naming_the_field(
    api: httpx.Client, fields: dict[str, Any], location: str
) -> None:
    body = {"task_id": "team/add", "arguments": {"a": 1}, **fields}
    response = api.post("/v1/schedules", json=body)
    assert response.status_code == 422, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert location in {error["location"] for error in response.json()["errors"]}


def test_unknown_schedules_and_bad_changes_answer_problems(api: httpx.Client) -> None:
    assert api.get("/v1/schedules/sch_00000000000000000000000000").status_code == 404
    assert api.get("/v1/schedules/not-an-id").status_code == 404
    assert api.patch("/v1/schedules/sch_00000000000000000000000000", json={"enabled": False}).status_code == 404
    assert api.post("/v1/schedules/sch_00000000000000000000000000/execute").status_code == 404
    made = create(api, expression="rate(5 minutes)")
    url = f"/v1/schedules/{made['schedule_id']}"
    unknown_field = api.patch(url, json={"colour": "red"})
    assert unknown_field.status_code == 422 and unknown_field.json()["errors"][0]["location"] == "body.colour"
    assert api.patch(url, json={"expression": "rate(0 minutes)"}).status_code == 422
    assert api.patch(url, json={"expression": None}).status_code == 422
    assert api.patch(url, content=b"{not json", headers={"Content-Type": "application/json"}).status_code == 400
    assert api.get("/v1/schedules", params={"cursor": "not-a-cursor"}).status_code == 422
    assert api.get("/v1/schedules", params={"limit": 0}).status_code == 422
    assert api.get("/v1/runs", params={"schedule_id": "../etc"}).status_code == 422
    assert api.get(url).json()["expression"] == "rate(5 minutes)"  # nothing refused was kept
    api.delete(url)


def test_a_firing_whose_first_delivery_died_after_claiming_it_runs_once_on_the_repeat(
    api: httpx.Client, invoke: Invoke
) -> None:
    from taskrun.ids import new_run_id
    from taskrun.schedules.store import ScheduleStore
    from taskrun.settings import get_settings

    made = create(api, expression="rate(1 day)")
    moment = datetime.now(UTC).replace(microsecond=0)
    # Given a delivery that claimed the firing and died before making its run
    chosen = new_run_id()
    assert ScheduleStore(get_settings().schedules_table).claim_firing(made["schedule_id"], moment, chosen) == chosen
    event = load_event("schedule_target") | {"schedule_id": made["schedule_id"], "scheduled_time": format_time(moment)}

    # When EventBridge Scheduler delivers the firing again, twice
    answers = [invoke("ScheduleTargetFunction", event) for _ in range(2)]

    # Then the run the first delivery chose is made, once
    assert answers == [{"run_id": chosen}, {"run_id": None}]
    assert [run["run_id"] for run in runs_of(api, made["schedule_id"])] == [chosen]
    api.delete(f"/v1/schedules/{made['schedule_id']}")


def test_a_schedule_past_the_stack_s_most_is_refused(stack: LocalStack, api: httpx.Client) -> None:
    # Given a stack that holds at most one schedule more than it has
    held, cursor = 0, None
    while True:
        page = api.get("/v1/schedules", params={"limit": 100, **({"cursor": cursor} if cursor else {})}).json()
        held += len(page["schedules"])
        if not (cursor := page["next_cursor"]):
            break
    stack.emulator.runtime.update_environment(["SchedulesFunction"], {"TASKRUN_MAX_SCHEDULES": str(held + 1)})
    try:
        body = {"task_id": "team/add", "arguments": {"a": 1}, "expression": "rate(1 day)"}
        # When two more are made, the first is, and the second is refused with a 422 saying why
        made = api.post("/v1/schedules", json=body)
        assert made.status_code == 201, made.text
        refused = api.post("/v1/schedules", json=body)
        assert refused.status_code == 422
        assert "TASKRUN_MAX_SCHEDULES" in refused.json()["detail"]
        # and once one is deleted, there is room again
        assert api.delete(f"/v1/schedules/{made.json()['schedule_id']}").status_code == 204
        again = api.post("/v1/schedules", json=body)
        assert again.status_code == 201
        api.delete(f"/v1/schedules/{again.json()['schedule_id']}")
    finally:
        stack.emulator.runtime.update_environment(["SchedulesFunction"], {"TASKRUN_MAX_SCHEDULES": None})


PASSWORD = "hunter2-correct-horse"
TOKEN = "tok-4f9a8b7c6d5e"


def test_a_schedule_s_secret_arguments_show_masked_and_its_runs_get_them(api: httpx.Client, invoke: Invoke) -> None:
    from taskrun.runs.store import DynamoRunStore
    from taskrun.schedules.store import ScheduleStore
    from taskrun.settings import get_settings

    # Given a schedule of a task that takes a password and a token
    arguments = {"user": "ada", "password": PASSWORD, "token": TOKEN}
    made = create(api, task_id="secret/login", arguments=arguments, expression="rate(1 day)")
    schedule_id, url = made["schedule_id"], f"/v1/schedules/{made['schedule_id']}"
    masked = {"user": "ada", "password": MASK, "token": MASK, "fail": False}

    # When it is read, listed and changed
    read = api.get(url)
    listed = api.get("/v1/schedules", params={"task_id": "secret/login", "limit": 100})
    changed = api.patch(url, json={"description": "nightly login"})

    # Then every answer shows the secrets masked, as a run's answers do
    assert made["arguments"] == masked
    assert read.json()["arguments"] == masked and changed.json()["arguments"] == masked
    (in_list,) = [s for s in listed.json()["schedules"] if s["schedule_id"] == schedule_id]
    assert in_list["arguments"] == masked
    for answer in (read, listed, changed):
        assert PASSWORD not in answer.text and TOKEN not in answer.text

    # When a client sends back the arguments as it read them, one of them changed
    sent_back = api.patch(url, json={"arguments": {**read.json()["arguments"], "user": "grace"}})

    # Then the schedule keeps its secrets (the mask is not taken for a new value) and shows them masked
    assert sent_back.status_code == 200, sent_back.text
    assert sent_back.json()["arguments"] == {**masked, "user": "grace"}
    kept = ScheduleStore(get_settings().schedules_table).get(schedule_id).arguments
    assert kept == {**arguments, "user": "grace", "fail": False}

    # When it fires, and when it is run now with the password sent back masked
    event = load_event("schedule_target") | {
        "schedule_id": schedule_id,
        "scheduled_time": format_time(datetime.now(UTC)),
    }
    fired = invoke("ScheduleTargetFunction", event)["run_id"]
    executed = api.post(f"{url}/execute", json={"arguments": {"password": MASK}})
    assert executed.status_code == 201, executed.text
    assert executed.json()["arguments"] == {**masked, "user": "grace"} and PASSWORD not in executed.text

    # Then each run's task got the secrets as they were given, and each run shows them masked
    runs = DynamoRunStore(get_settings().runs_table)
    for run_id in (fired, executed.json()["run_id"]):
        run = api.get(f"/v1/runs/{run_id}", params={"wait": "true"}).json()
        assert run["status"] == "succeeded", run
        assert run["result"] == {"user": "grace", "password_length": len(PASSWORD), "token": "SecretStr"}
        assert run["arguments"] == {**masked, "user": "grace"}
        assert runs.get(run_id).arguments == {**arguments, "user": "grace", "fail": False}
    api.delete(url)


def test_a_mask_sent_for_a_secret_the_schedule_does_not_hold_is_422(api: httpx.Client) -> None:
    # Given a schedule given a password but no token
    made = create(
        api, task_id="secret/login", arguments={"user": "ada", "password": PASSWORD}, expression="rate(1 day)"
    )
    url = f"/v1/schedules/{made['schedule_id']}"
    sent = {"user": "ada", "password": MASK, "token": MASK}

    # When the mask is sent for the token, in a change and in a run now
    changed = api.patch(url, json={"arguments": sent})
    executed = api.post(f"{url}/execute", json={"arguments": {"token": MASK}})

    # Then both are refused naming the token, and the schedule is as it was
    for refused in (changed, executed):
        assert refused.status_code == 422, refused.text
        assert [error["location"] for error in refused.json()["errors"]] == ["body.arguments.token"]
    assert api.get(url).json()["arguments"] == {"user": "ada", "password": MASK, "token": None, "fail": False}
    api.delete(url)


@pytest.mark.parametrize(
    "expression",
    [
        "at(0)",
        "at(2031-13-01T10:00:00)",
        "at(2031-01-01T24:00:00)",
        "at(2031-01-01 10:00:00)",
        "at(٢٠٣١-01-01T10:00:00)",
        "rate(0 minutes)",
        "rate(5 minute)",
        "rate(1 minutes)",
        "rate(05 minutes)",
        "rate(1000000 minutes)",
        "rate(5 weeks)",
        "cron(0 9 ? * MON-FRI)",
        "cron(0  9 ? * MON-FRI *)",
        "cron(0 9 ? * MON-FRI * *)",
        "cron(0 9 ? * MON-FRI *) ",
        "every day",
        "at(2031-01-01T10:00:00)",
        "rate(1 minute)",
        "rate(5 minutes)",
        "rate(999999 days)",
        "cron(0 9 ? * MON-FRI *)",
        "cron(0/5 * L * ? 2030-2040)",
        "cron(0 9 ? * 6#3 *)",
    ],
)
def test_the_documented_expression_pattern_takes_what_the_api_takes(api: httpx.Client, expression: str) -> None:
    # Given the expression's pattern in the API document, for a new schedule and a change
    schemas = api.get("/v1/openapi.json").json()["components"]["schemas"]
    patterns = {schemas[name]["properties"]["expression"]["pattern"] for name in ("ScheduleRequest", "SchedulePatch")}
    (pattern,) = patterns
    made = create(api, expression="rate(1 day)")
    url = f"/v1/schedules/{made['schedule_id']}"

    # When the expression is sent, made and changed to
    posted = api.post("/v1/schedules", json={"task_id": "team/add", "arguments": {"a": 1}, "expression": expression})
    patched = api.patch(url, json={"expression": expression})

    # Then the API takes it exactly when the document's pattern does, a refusal naming the field
    documented = re.search(pattern, expression) is not None
    assert (posted.status_code == 201) is documented, posted.text
    assert (patched.status_code == 200) is documented, patched.text
    for answer in (posted, patched):
        if answer.status_code == 422:
            assert [error["location"] for error in answer.json()["errors"]] == ["body.expression"]
    if posted.status_code == 201:
        api.delete(f"/v1/schedules/{posted.json()['schedule_id']}")
    api.delete(url)


def test_a_start_time_in_an_early_year_is_kept_readable_and_one_past_utc_is_refused(api: httpx.Client) -> None:
    # Given a rate schedule whose first firing is anchored in the year 110
    body = {"task_id": "examples/greet", "arguments": {"name": "x"}, "expression": "rate(1 day)", "enabled": False}
    made = api.post("/v1/schedules", json={**body, "start_at": "0110-10-23T12:56:33Z"})
    assert made.status_code == 201, made.text
    # Then it reads back as written, four digits of year, and the list still answers
    assert made.json()["start_at"] == "0110-10-23T12:56:33.000Z"
    assert api.get(f"/v1/schedules/{made.json()['schedule_id']}").json()["start_at"] == "0110-10-23T12:56:33.000Z"
    assert api.get("/v1/schedules", params={"limit": 100}).status_code == 200
    # But a time whose offset takes it before the year 1 in UTC is refused where it stands
    refused = api.post("/v1/schedules", json={**body, "start_at": "0001-01-01T00:00:00+01:00"})
    assert refused.status_code == 422, refused.text
    assert [error["location"] for error in refused.json()["errors"]] == ["body.start_at"]
    assert api.delete(f"/v1/schedules/{made.json()['schedule_id']}").status_code in (200, 204)
