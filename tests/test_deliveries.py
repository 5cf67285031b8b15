"""Webhook delivery, end to end on the local stack: a run with a webhook_url ends, the
runs table's stream records its delivery, the queue hands it to the webhook function, and
a receiver on this machine gets one signed POST (checked with the reference Standard
Webhooks library), retried on the test stack's short schedule until it answers 2xx."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import httpx
import pytest

from taskrun.local.stack import LocalStack
from taskrun.webhooks import send as webhooks
from taskrun.webhooks.deliveries import RetrySchedule
from tests.conftest import WEBHOOK_RETRY_DELAYS, WEBHOOK_TIMEOUT_SECONDS
from tests.receiver import Receiver, always, fail_first, hang_first

ATTEMPTS = len(WEBHOOK_RETRY_DELAYS.split(",")) + 1


def start(api: httpx.Client, url: str, task_id: str = "team/add", **fields: Any) -> dict[str, Any]:
    body = {"task_id": task_id, "arguments": {"a": 2, "b": 3}, "webhook_url": url, "wait": True, **fields}
    response = api.post("/v1/runs", json=body)
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()
    return run


def deliveries(api: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    response = api.get(f"/v1/runs/{run_id}/deliveries")
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["deliveries"]
    return found


def first_attempt(api: httpx.Client, run_id: str, timeout: float = 10.0) -> dict[str, Any]:
    """The run's delivery once its first attempt is recorded."""
    deadline = time.monotonic() + timeout
    while True:
        found = deliveries(api, run_id)
        if found and found[0]["attempts"]:
            return found[0]
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def settled(api: httpx.Client, run_id: str, timeout: float = 20.0) -> dict[str, Any]:
    """The run's one delivery once it is no longer pending."""
    deadline = time.monotonic() + timeout
    while True:
        found = deliveries(api, run_id)
        if found and found[0]["status"] != "pending":
            assert len(found) == 1
            return found[0]
        assert time.monotonic() < deadline, found
        time.sleep(0.1)


def test_an_ended_run_is_posted_once_signed_as_standard_webhooks_verify(api: httpx.Client, receiver: Receiver) -> None:
    run = start(api, receiver.url)
    assert run["status"] == "succeeded"

    delivery = settled(api, run["run_id"])
    assert delivery["status"] == "succeeded" and delivery["url"] == receiver.url
    assert delivery["event_type"] == "run.succeeded"
    (attempt,) = delivery["attempts"]
    assert attempt["status_code"] == 204 and attempt["trigger"] == "automatic" and attempt["duration_ms"] >= 0

    (received,) = receiver.of_run(run["run_id"])
    assert received.webhook_id == delivery["delivery_id"]
    payload = receiver.verify(received)  # the reference verifier accepts the signature
    assert payload["type"] == "run.succeeded"
    assert payload["data"] == api.get(f"/v1/runs/{run['run_id']}").json()  # the run as GET shows it
    assert received.headers["content-type"] == "application/json"
    assert abs(int(received.headers["webhook-timestamp"]) - time.time()) < 60


def test_a_tampered_body_or_another_secret_fails_verification(api: httpx.Client, receiver: Receiver) -> None:
    run = start(api, receiver.url)
    receiver.wait_for(lambda: bool(receiver.of_run(run["run_id"])))
    (received,) = receiver.of_run(run["run_id"])
    from standardwebhooks import Webhook
    from standardwebhooks.webhooks import WebhookVerificationError

    with pytest.raises(WebhookVerificationError):
        receiver.verifier.verify(received.body.replace(b"succeeded", b"failed"), received.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(webhooks.new_secret()).verify(received.body, received.headers)


def test_failed_runs_are_delivered_too(api: httpx.Client, receiver: Receiver) -> None:
    run = start(api, receiver.url, task_id="examples/fail", arguments={"message": "broken"})
    assert run["status"] == "failed"
    assert settled(api, run["run_id"])["event_type"] == "run.failed"
    (received,) = receiver.of_run(run["run_id"])
    assert receiver.verify(received)["data"]["error"]["type"] == "execution_error"


def test_a_receiver_answering_500_is_tried_again_until_it_takes_it(api: httpx.Client, receiver: Receiver) -> None:
    receiver.behaviour = fail_first(2, status=500)
    run = start(api, receiver.url)
    delivery = settled(api, run["run_id"])
    assert delivery["status"] == "succeeded"
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 500, 204]
    assert [a["number"] for a in delivery["attempts"]] == [1, 2, 3]
    received = receiver.of_run(run["run_id"])
    assert len({r.webhook_id for r in received}) == 1  # one message, the same id on every attempt
    assert len(receiver.accepted(delivery["delivery_id"])) == 1
    gaps = [b.at - a.at for a, b in itertools.pairwise(received)]
    assert all(gap >= 0.7 for gap in gaps), gaps  # the schedule's 1 s, less its jitter


def test_a_receiver_that_never_takes_it_ends_failed_after_the_schedule(api: httpx.Client, receiver: Receiver) -> None:
    receiver.behaviour = always(503)
    run = start(api, receiver.url)
    delivery = settled(api, run["run_id"])
    assert delivery["status"] == "failed" and delivery["next_attempt_at"] is None
    assert [a["status_code"] for a in delivery["attempts"]] == [503] * ATTEMPTS


def test_a_hanging_receiver_is_given_up_on_and_tried_again(api: httpx.Client, receiver: Receiver) -> None:
    receiver.behaviour = hang_first(WEBHOOK_TIMEOUT_SECONDS + 1.5)
    run = start(api, receiver.url)
    delivery = settled(api, run["run_id"])
    assert delivery["status"] == "succeeded"
    first, second = delivery["attempts"]
    assert first["status_code"] is None and "no answer within" in first["error"]
    assert WEBHOOK_TIMEOUT_SECONDS * 1000 * 0.9 <= first["duration_ms"] < WEBHOOK_TIMEOUT_SECONDS * 1000 + 1500
    assert second["status_code"] == 200
    assert len(receiver.accepted(delivery["delivery_id"])) == 1


def test_a_receiver_that_is_down_then_back_gets_it_once(api: httpx.Client, receiver: Receiver) -> None:
    receiver.stop()
    run = start(api, receiver.url)
    first_attempt(api, run["run_id"])
    receiver.start()
    delivery = settled(api, run["run_id"])
    assert delivery["status"] == "succeeded"
    assert "could not connect" in delivery["attempts"][0]["error"]
    assert len(receiver.accepted(delivery["delivery_id"])) == 1


def test_redirects_are_not_followed(stack: LocalStack, api: httpx.Client, receiver: Receiver) -> None:
    assert stack.webhook_secret is not None
    elsewhere = Receiver(stack.webhook_secret)
    try:
        receiver.behaviour, receiver.location = always(307), elsewhere.url
        run = start(api, receiver.url)
        delivery = settled(api, run["run_id"])
    finally:
        elsewhere.stop()
    assert delivery["status"] == "failed"
    assert {a["status_code"] for a in delivery["attempts"]} == {307}
    assert elsewhere.received == []


def test_a_delivery_is_retried_by_hand(api: httpx.Client, receiver: Receiver) -> None:
    receiver.behaviour = always(500)
    run = start(api, receiver.url)
    delivery = settled(api, run["run_id"])
    assert delivery["status"] == "failed"

    receiver.behaviour = always(200)
    retried = api.post(f"/v1/runs/{run['run_id']}/deliveries/{delivery['delivery_id']}/retry")
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "pending"
    again = settled(api, run["run_id"])
    assert again["status"] == "succeeded"
    assert again["attempts"][-1]["trigger"] == "manual" and again["attempts"][-1]["status_code"] == 200
    assert len(again["attempts"]) == ATTEMPTS + 1
    assert len(receiver.accepted(delivery["delivery_id"])) == 1


def test_a_retry_while_an_attempt_is_under_way_is_a_conflict(api: httpx.Client, receiver: Receiver) -> None:
    receiver.behaviour = hang_first(WEBHOOK_TIMEOUT_SECONDS + 0.5)
    run = start(api, receiver.url)
    receiver.wait_for(lambda: bool(receiver.of_run(run["run_id"])))
    delivery_id = receiver.of_run(run["run_id"])[0].webhook_id
    answer = api.post(f"/v1/runs/{run['run_id']}/deliveries/{delivery_id}/retry")
    assert answer.status_code == 409
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert settled(api, run["run_id"])["status"] == "succeeded"


def test_a_run_without_a_webhook_has_no_deliveries(api: httpx.Client) -> None:
    run = api.post("/v1/runs", json={"task_id": "team/add", "arguments": {"a": 1}, "wait": True}).json()
    time.sleep(0.5)
    assert deliveries(api, run["run_id"]) == []


def test_a_schedules_runs_are_delivered(api: httpx.Client, receiver: Receiver) -> None:
    body = {"task_id": "team/add", "arguments": {"a": 1}, "expression": "rate(1 day)", "webhook_url": receiver.url}
    made = api.post("/v1/schedules", json=body).json()
    try:
        run = api.post(f"/v1/schedules/{made['schedule_id']}/execute").json()
        delivery = settled(api, run["run_id"])
    finally:
        api.delete(f"/v1/schedules/{made['schedule_id']}")
    assert delivery["status"] == "succeeded"
    (received,) = receiver.of_run(run["run_id"])
    assert receiver.verify(received)["data"]["schedule_id"] == made["schedule_id"]


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/runs/run_00000000000000000000000000/deliveries", 404),
        ("/v1/runs/not-a-run/deliveries", 404),
        ("/v1/runs/" + "x" * 5000 + "/deliveries", 404),
        ("/v1/runs/run_%00%ff/deliveries", 404),
    ],
)
def test_deliveries_of_no_run_are_not_found(api: httpx.Client, path: str, status: int) -> None:
    answer = api.get(path)
    assert answer.status_code == status
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_retrying_what_is_not_a_delivery_is_not_found(api: httpx.Client) -> None:
    run = api.post("/v1/runs", json={"task_id": "team/add", "arguments": {"a": 1}, "wait": True}).json()
    for delivery_id in ("msg_00000000000000000000000000", "nope", "msg_" + "z" * 3000, "%7B%22a%22%3A1%7D"):
        answer = api.post(f"/v1/runs/{run['run_id']}/deliveries/{delivery_id}/retry", content=b"{not json")
        assert answer.status_code == 404, (delivery_id, answer.text)
    unknown_run = api.post("/v1/runs/run_00000000000000000000000000/deliveries/msg_00000000000000000000000000/retry")
    assert unknown_run.status_code == 404


def test_delivery_routes_need_a_key(anonymous: httpx.Client) -> None:
    assert anonymous.get("/v1/runs/run_00000000000000000000000000/deliveries").status_code == 401
    assert anonymous.post("/v1/runs/run_0/deliveries/msg_0/retry").status_code == 401


def test_at_delivery_a_host_is_resolved_and_checked_again(receiver: Receiver) -> None:
    """A name that resolves inside when the message goes is refused then, whatever it
    resolved to when the run was made (DNS rebinding), and nothing is sent."""
    url = receiver.url.replace("127.0.0.1", "localhost")
    answer = webhooks.post(url, b"{}", {}, timeout=2, allow_private=False)
    assert answer.status_code is None and answer.error is not None
    assert answer.error.startswith("refused: localhost resolves to") and "loopback" in answer.error
    metadata = webhooks.post("http://169.254.169.254/latest/", b"{}", {}, timeout=2, allow_private=True)
    assert metadata.error is not None and "link-local" in metadata.error
    assert receiver.received == []
    allowed = webhooks.post(url, b"{}", {}, timeout=2, allow_private=True)
    assert allowed.status_code == 204


# Addresses that are neither this machine's nor a private network's, which the setting
# once let through (Python counts them private) and must not.
STILL_REFUSED = [
    "http://192.0.2.10/hook",  # documentation
    "http://[2001:db8::1]/hook",
    "http://198.18.0.1/hook",  # benchmarking
    "http://255.255.255.255/hook",  # broadcast
    "http://240.0.0.1/hook",  # reserved
    "http://[fd00:ec2::254]/latest/meta-data/",  # the metadata service over IPv6, inside fc00::/7
    "http://2852039166/latest/meta-data/",  # 169.254.169.254 as one number
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
]


@pytest.mark.parametrize("url", STILL_REFUSED)
def test_with_private_webhooks_allowed_what_is_not_private_is_still_refused(
    api: httpx.Client, private_webhooks: None, url: str
) -> None:
    # Given a stack that lets webhooks reach this machine and private networks
    mine = {
        "task_id": "team/add",
        "arguments": {"a": 1},
        "expression": "rate(1 day)",
        "webhook_url": "http://127.0.0.1:9/hook",
    }
    allowed = api.post("/v1/schedules", json=mine)
    assert allowed.status_code == 201, allowed.text
    api.delete(f"/v1/schedules/{allowed.json()['schedule_id']}")
    body = {"task_id": "team/add", "arguments": {"a": 1}, "webhook_url": url}
    # When a run or a schedule names a webhook elsewhere that is not public
    run = api.post("/v1/runs", json=body)
    schedule = api.post("/v1/schedules", json={**body, "expression": "rate(1 day)"})
    # Then each is refused at its webhook_url, with no hint that the setting would help
    for refused in (run, schedule):
        assert refused.status_code == 422, refused.text
        (error,) = refused.json()["errors"]
        assert error["location"] == "body.webhook_url"
        assert "TASKRUN_WEBHOOK_ALLOW_PRIVATE" not in error["message"]
    # and a delivery there would be refused too, before any connection
    answer = webhooks.post(url, b"{}", {}, timeout=2, allow_private=True)
    assert answer.status_code is None and answer.error is not None and answer.error.startswith("refused: ")


def test_the_default_schedule_spans_minutes_to_about_a_day() -> None:
    schedule = RetrySchedule()
    nominal = sum(schedule.delays)
    assert schedule.max_attempts == 8
    assert 24 * 3600 <= nominal <= 30 * 3600
    delays = [schedule.delay_after(n) for n in range(1, schedule.max_attempts)]
    assert all(d is not None for d in delays)
    assert schedule.delay_after(schedule.max_attempts) is None
    for n in range(1, schedule.max_attempts):  # jitter stays within ±20%
        for _ in range(20):
            value = schedule.delay_after(n)
            assert value is not None and 0.8 * schedule.delays[n - 1] <= value <= 1.2 * schedule.delays[n - 1]


def test_a_run_answered_from_the_cache_is_delivered_too(api: httpx.Client, receiver: Receiver, tmp_path: Path) -> None:
    arguments = {"word": "cherry", "marks": str(tmp_path)}
    first = start(api, receiver.url, task_id="results/cached", arguments=arguments)
    second = start(api, receiver.url, task_id="results/cached", arguments=arguments)
    assert second["cached_from"] == first["run_id"]
    delivery = settled(api, second["run_id"])
    assert delivery["status"] == "succeeded"
    (received,) = receiver.of_run(second["run_id"])
    assert receiver.verify(received)["data"]["cached"] is True


@pytest.mark.usefixtures("own_sweeps")
def test_a_delivery_whose_message_was_lost_is_queued_again_by_the_sweeper(
    stack: LocalStack, api: httpx.Client, receiver: Receiver, invoke: Any
) -> None:
    # Given a delivery left pending with no message: its receiver was down, and the queue
    # lost what it held (as a message dead-lettered after failing handling would be)
    receiver.stop()
    run = start(api, receiver.url)
    first_attempt(api, run["run_id"])
    sqs = boto3.client("sqs", region_name=stack.region)
    sqs.purge_queue(QueueUrl=sqs.get_queue_url(QueueName="taskrun-local-webhooks")["QueueUrl"])
    (delivery,) = deliveries(api, run["run_id"])
    assert delivery["status"] == "pending"
    table = boto3.resource("dynamodb", region_name=stack.region).Table("DeliveriesTable")
    table.update_item(  # its next attempt was due long ago
        Key={"run_id": run["run_id"], "delivery_id": delivery["delivery_id"]},
        UpdateExpression="SET next_attempt_at = :then",
        ExpressionAttributeValues={":then": "2026-01-01T00:00:00.000Z"},
    )
    receiver.start()

    # When the sweeper runs, the delivery gets a new message and reaches the receiver once
    swept = invoke("SweeperFunction", {"time": "2026-11-24T00:00:00Z"})
    assert swept["deliveries_requeued"] >= 1
    assert settled(api, run["run_id"])["status"] == "succeeded"
    assert len(receiver.accepted(delivery["delivery_id"])) == 1


def test_a_quiet_stack_leaves_the_runs_stream_alone_and_still_posts_the_next_run_at_once(
    api: httpx.Client, receiver: Receiver
) -> None:
    from moto.dynamodbstreams.models import DynamoDBStreamsBackend

    reads: list[float] = []
    original = DynamoDBStreamsBackend.get_records

    def counted(backend: DynamoDBStreamsBackend, iterator_arn: str, limit: int) -> dict[str, Any]:
        reads.append(time.monotonic())
        return original(backend, iterator_arn, limit)

    # Given a stack with nothing going on for three seconds
    time.sleep(1.5)  # what came before settles
    with mock.patch.object(DynamoDBStreamsBackend, "get_records", counted):
        time.sleep(3)
        quiet_reads = len(reads)

        # When a run with a webhook ends
        run = start(api, receiver.url)
        receiver.wait_for(lambda: bool(receiver.of_run(run["run_id"])), timeout=5)

    # Then the quiet stack read the stream about once a second (polling would be 30 times),
    # and the run's end still reached the webhook
    assert quiet_reads <= 6, reads
    (received,) = receiver.of_run(run["run_id"])
    assert receiver.verify(received)["data"]["run_id"] == run["run_id"]
