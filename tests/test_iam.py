"""IAM in local mode: each function calls the emulator as its own role, read from the
template through the SAM transform, and what its role does not allow fails as on AWS."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import httpx
import pytest

from taskrun.local.iam import Call, Judge, allows
from taskrun.local.stack import LocalStack
from taskrun.settings import get_settings
from tests.test_files import upload
from tests.test_schedules import create, runs_of, until, wall

RUNS_TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/RunsTable"


def calls_of(stack: LocalStack, function: str) -> set[tuple[str, str]]:
    return {(call.action, call.resource) for call in stack.emulator.iam.checked if call.function == function}


def test_each_function_calls_as_its_own_role(stack: LocalStack, api: httpx.Client) -> None:
    # When a run is started and read back
    run = api.post("/v1/runs", json={"task_id": "team/add", "arguments": {"a": 1}, "wait": True}).json()
    assert api.get(f"/v1/runs/{run['run_id']}").status_code == 200
    # Then each function's calls were judged by its own role and allowed
    assert ("dynamodb:PutItem", RUNS_TABLE) in calls_of(stack, "StartRunFunction")
    assert ("dynamodb:GetItem", RUNS_TABLE) in calls_of(stack, "GetRunFunction")
    keys = "arn:aws:dynamodb:us-east-1:123456789012:table/KeysTable"
    assert ("dynamodb:GetItem", keys) in calls_of(stack, "AuthorizerFunction")
    assert not [call for call in stack.emulator.iam.refused if call.resource.startswith(RUNS_TABLE)]


@pytest.fixture
def without_get_item(stack: LocalStack) -> Iterator[None]:
    """GetRunFunction's role as the template would make it with dynamodb:GetItem on the runs
    table taken out (the rest of its policies kept)."""
    roles = stack.emulator.iam.roles
    kept = roles["GetRunFunction"]
    trimmed = json.loads(json.dumps(kept))
    for policy in trimmed:
        for statement in policy["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if "dynamodb:GetItem" in actions and RUNS_TABLE in json.dumps(statement["Resource"]):
                statement["Action"] = [a for a in actions if a != "dynamodb:GetItem"] or ["dynamodb:DescribeTable"]
    roles["GetRunFunction"] = trimmed
    yield
    roles["GetRunFunction"] = kept


def test_a_permission_taken_from_a_role_is_the_access_denied_aws_would_answer(
    stack: LocalStack, api: httpx.Client, without_get_item: None
) -> None:
    run = api.post("/v1/runs", json={"task_id": "team/add", "arguments": {"a": 1}}).json()
    stack.emulator.runtime.logs.clear()
    # When the function whose role lacks the permission reads the run
    answer = api.get(f"/v1/runs/{run['run_id']}")
    # Then the client gets the API's 500 problem (nothing of the error), and the function's
    # log holds AWS's AccessDeniedException naming the action and the table
    assert answer.status_code == 500 and answer.headers["content-type"] == "application/problem+json"
    assert "AccessDenied" not in answer.text

    def logged() -> str:
        return "\n".join(line for function, line in list(stack.emulator.runtime.logs) if function == "GetRunFunction")

    deadline = time.monotonic() + 10  # a sandbox's lines reach the stack's log as they are read
    while "AccessDeniedException" not in logged() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "AccessDeniedException" in logged()
    assert f"is not authorized to perform: dynamodb:GetItem on resource: {RUNS_TABLE}" in logged()


def test_a_missing_key_is_403_to_a_role_that_may_not_list_the_bucket_and_404_to_one_that_may(
    stack: LocalStack,
) -> None:
    bucket = get_settings().results_bucket
    roles = stack.emulator.iam.roles

    def head(function: str, key: str) -> str:
        credentials = stack.emulator.iam.credentials(function)
        s3 = boto3.Session(
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=credentials["AWS_SESSION_TOKEN"],
            region_name="us-east-1",
        ).client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        try:
            s3.head_object(Bucket=bucket, Key=key)
        except s3.exceptions.ClientError as error:
            return str(error.response["Error"]["Code"])
        return "200"

    # StartRunFunction may read files/* but not list the bucket: S3 does not tell it what is missing
    assert not allows(roles["StartRunFunction"], Call("StartRunFunction", "s3:ListBucket", f"arn:aws:s3:::{bucket}"))
    assert head("StartRunFunction", "files/file_" + "0" * 32) == "403"
    # and a key outside what it may read is 403 too, there or not
    assert head("StartRunFunction", "logs/whatever.txt") == "403"
    # (the stack's own process, standing in for an administrator, hears 404)
    with pytest.raises(boto3.client("s3").exceptions.ClientError, match="404"):
        boto3.client("s3").head_object(Bucket=bucket, Key="files/file_" + "1" * 32)


def test_the_logs_of_a_run_with_none_yet_are_empty_though_s3_answers_403(api: httpx.Client) -> None:
    run = api.post("/v1/runs", json={"task_id": "examples/sleep", "arguments": {"seconds": 5}}).json()
    answer = api.get(f"/v1/runs/{run['run_id']}/logs")
    assert answer.status_code == 200, answer.text
    assert answer.json()["text"] == ""
    api.post(f"/v1/runs/{run['run_id']}/cancel")


def test_a_file_argument_reaches_the_task_in_a_run_a_schedule_starts(api: httpx.Client) -> None:
    data = os.urandom(1000)
    file_id = upload(api, data)
    # Given a one-off schedule of a task with a file argument, a few seconds ahead
    made = create(
        api,
        task_id="files/measure",
        arguments={"upload": {"file_id": file_id}, "label": "scheduled"},
        expression=f"at({wall(datetime.now(UTC) + timedelta(seconds=3))})",
    )
    # When it fires (the schedule target function starts the run)
    (run,) = until(lambda: runs_of(api, made["schedule_id"]), seconds=30)
    ended = api.get(f"/v1/runs/{run['run_id']}", params={"wait": "true"}).json()
    # Then the task read the file
    assert ended["status"] == "succeeded", ended
    assert ended["result"]["sha256"] == hashlib.sha256(data).hexdigest()


def test_a_file_argument_reaches_the_task_in_a_run_a_state_machine_starts(api: httpx.Client) -> None:
    data = os.urandom(1000)
    file_id = upload(api, data)
    # a state machine's Task state invoking the run-task function, as flows do
    answer = boto3.client("lambda").invoke(
        FunctionName="RunTaskFunction",
        Payload=json.dumps({"task_id": "files/measure", "arguments": {"upload": {"file_id": file_id}, "label": "sm"}}),
    )
    result: Any = json.loads(answer["Payload"].read())
    assert "FunctionError" not in answer, result
    assert result["sha256"] == hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------ the verdicts


def test_an_explicit_deny_wins_over_any_allow() -> None:
    policies = [
        {"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]},
        {"Statement": [{"Effect": "Deny", "Action": "s3:DeleteObject", "Resource": "arn:aws:s3:::b/*"}]},
    ]
    assert allows(policies, Call("F", "s3:GetObject", "arn:aws:s3:::b/k"))
    assert not allows(policies, Call("F", "s3:DeleteObject", "arn:aws:s3:::b/k"))
    assert not allows([], Call("F", "s3:GetObject", "arn:aws:s3:::b/k"))  # nothing allows it


def test_actions_match_without_case_and_resources_with_it_and_wildcards_hold() -> None:
    policy = {
        "Statement": [{"Effect": "Allow", "Action": "DynamoDB:Get*", "Resource": "arn:aws:dynamodb:*:*:table/Runs"}]
    }
    assert allows([policy], Call("F", "dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:1:table/Runs"))
    assert not allows([policy], Call("F", "dynamodb:GetItem", "arn:aws:dynamodb:us-east-1:1:table/runs"))
    assert not allows([policy], Call("F", "dynamodb:PutItem", "arn:aws:dynamodb:us-east-1:1:table/Runs"))
    not_action = {"Statement": [{"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}]}
    assert allows([not_action], Call("F", "sqs:SendMessage", "arn:aws:sqs:us-east-1:1:q"))
    assert not allows([not_action], Call("F", "iam:PassRole", "arn:aws:iam::1:role/r"))


def test_a_condition_on_the_listed_prefix_is_judged() -> None:
    policy = {
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": "arn:aws:s3:::b",
                "Condition": {"StringLike": {"s3:prefix": "logs/*"}},
            }
        ]
    }
    assert allows([policy], Call("F", "s3:ListBucket", "arn:aws:s3:::b", (("s3:prefix", "logs/run_1/"),)))
    assert not allows([policy], Call("F", "s3:ListBucket", "arn:aws:s3:::b", (("s3:prefix", "files/"),)))
    assert not allows([policy], Call("F", "s3:ListBucket", "arn:aws:s3:::b"))  # no prefix: the key is absent
    if_exists = {
        "Statement": [{**policy["Statement"][0], "Condition": {"StringLikeIfExists": {"s3:prefix": "logs/*"}}}]
    }
    assert allows([if_exists], Call("F", "s3:ListBucket", "arn:aws:s3:::b"))
    with pytest.raises(ValueError, match="NumericLessThan"):
        allows(
            [
                {
                    "Statement": [
                        {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"NumericLessThan": {"k": 1}}}
                    ]
                }
            ],
            Call("F", "s3:ListBucket", "arn:aws:s3:::b", (("k", "0"),)),
        )


# What SAM's event sources attach to a function's role, as AWS publishes those managed policies
EVENT_SOURCE_POLICIES = {
    "NotifierFunction": {  # AWSLambdaDynamoDBExecutionRole
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                    "dynamodb:ListStreams",
                ],
                "Resource": "*",
            }
        ]
    },
    "WebhookFunction": {  # AWSLambdaSQSQueueExecutionRole
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                "Resource": "*",
            }
        ]
    },
}


def test_the_event_source_grants_reach_only_the_stream_and_queue_each_function_reads(stack: LocalStack) -> None:
    judge = stack.emulator.iam
    resolve = stack.stack.resolve
    reads = {
        "NotifierFunction": ("dynamodb:GetRecords", resolve({"Fn::GetAtt": ["RunsTable", "StreamArn"]})),
        "WebhookFunction": ("sqs:ReceiveMessage", resolve({"Fn::GetAtt": ["WebhookQueue", "Arn"]})),
    }
    others = {
        "NotifierFunction": "arn:aws:dynamodb:us-east-1:123456789012:table/KeysTable/stream/2026-12-01T00:00:00.000",
        "WebhookFunction": resolve({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}),
    }
    for function, managed in EVENT_SOURCE_POLICIES.items():
        # the role as AWS holds it: its own policies and the event source's managed one, under its boundary
        assert function in judge.boundaries, f"{function} has no permissions boundary"
        effective = Judge({function: [*judge.roles[function], managed]}, {function: judge.boundaries[function]})
        action, own = reads[function]
        assert effective.allowed(Call(function, action, own)), function
        assert not effective.allowed(Call(function, action, others[function])), function
        unbounded = Judge({function: [*judge.roles[function], managed]})
        assert unbounded.allowed(Call(function, action, others[function]))  # what the boundary takes away


def test_a_flows_task_states_call_as_the_flows_role(stack: LocalStack, api: httpx.Client) -> None:
    # When a flow of the template runs (its Task states invoke the worker)
    run = api.post(
        "/v1/runs", json={"task_id": "examples/order", "arguments": {"order_id": "I-1", "quantity": 1}, "wait": True}
    ).json()
    assert run["status"] == "succeeded", run
    # Then those invocations were judged as the template's FlowsRole, and allowed
    worker = "arn:aws:lambda:us-east-1:123456789012:function:WorkerFunction"
    assert any(
        action == "lambda:InvokeFunction" and resource.startswith(worker)
        for action, resource in calls_of(stack, "FlowsRole")
    )
    assert not [call for call in stack.emulator.iam.refused if call.function == "FlowsRole"]


def test_the_services_that_deliver_to_the_stack_are_allowed_by_its_roles_and_resource_policies(
    stack: LocalStack,
) -> None:
    """What local mode's own process does in AWS's place (Scheduler invoking the schedule
    target, EventBridge dead-lettering), judged against the template's service role and
    the queue's resource policy."""
    template = stack.stack
    resolve = template.resolve
    dead_letters = resolve({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]})
    # EventBridge Scheduler, as SchedulerRole: the target of every schedule, and its dead letters
    scheduler_role = [
        resolve(p["PolicyDocument"]) for p in template.resources["SchedulerRole"]["Properties"]["Policies"]
    ]
    targets = {resolve(s["Properties"]["Target"]["Arn"]) for s in template.of_type("AWS::Scheduler::Schedule").values()}
    targets.add(template.arn("ScheduleTargetFunction"))  # what schedules made over the API target
    for target in targets:
        assert allows(scheduler_role, Call("SchedulerRole", "lambda:InvokeFunction", target)), target
    assert allows(scheduler_role, Call("SchedulerRole", "sqs:SendMessage", dead_letters))
    # EventBridge, by the dead-letter queue's policy: every rule that dead-letters to it
    (queue_policy,) = [
        resolve(p["Properties"]["PolicyDocument"])
        for p in template.of_type("AWS::SQS::QueuePolicy").values()
        if {"Ref": "DeadLetterQueue"} in p["Properties"]["Queues"]
    ]
    for_events = [
        {
            "Statement": [
                s for s in queue_policy["Statement"] if s.get("Principal") == {"Service": "events.amazonaws.com"}
            ]
        }
    ]
    rules = [
        f"{function}{name}"
        for function, resource in template.of_type("AWS::Serverless::Function").items()
        for name, event in resource["Properties"].get("Events", {}).items()
        if event["Type"] in ("EventBridgeRule", "Schedule") and "DeadLetterConfig" in event["Properties"]
    ]
    assert rules
    for rule in rules:
        arn = resolve({"Fn::GetAtt": [rule, "Arn"]})
        sent = Call("events", "sqs:SendMessage", dead_letters, (("aws:SourceArn", arn),))
        assert allows(for_events, sent), rule
    assert not allows(for_events, Call("events", "sqs:SendMessage", dead_letters, (("aws:SourceArn", "arn:x"),)))
