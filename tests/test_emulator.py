"""The emulator keeps DynamoDB's guarantees that the run lifecycle relies on."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from taskrun.local.stack import LocalStack
from taskrun.models import RunStatus, utcnow
from taskrun.runs.service import RunRequest, RunService
from taskrun.runs.store import Ending
from taskrun.runtime import run_service
from tests.test_lifecycle import HeldDispatcher


def test_a_reader_never_sees_half_of_a_run_ending(stack: LocalStack) -> None:
    # Given runs that end while a waiting caller keeps reading them
    live = run_service()
    held = RunService(store=live.store, dispatcher=HeldDispatcher(), catalog=live.catalog, settings=live.settings)
    halves: list[str] = []
    for _ in range(30):
        run = held.start(RunRequest(task_id="examples/greet", arguments={"name": "x"}))
        held.store.mark_running(run.run_id, utcnow())
        done = threading.Event()

        def read(run_id: str = run.run_id, done: threading.Event = done) -> None:
            while not done.is_set():
                seen = held.store.get(run_id)
                if seen.status is RunStatus.SUCCEEDED and (seen.result is None or seen.ended_at is None):
                    halves.append(run_id)

        reader = threading.Thread(target=read)
        reader.start()
        held.store.finish(run.run_id, Ending(RunStatus.SUCCEEDED, utcnow(), result={"n": 1}, usage={"t": 1}))
        done.set()
        reader.join()

    # Then no read saw the new status without the result that came with it
    assert halves == []


RICH_ITEM: dict[str, Any] = {
    "pk": {"S": "fidelity#1"},
    "text": {"S": "ünïcode ✓"},
    "empty": {"S": ""},
    "number": {"N": "-12.50"},
    "blob": {"B": b"\x00\xffbinary"},
    "flag": {"BOOL": False},
    "nothing": {"NULL": True},
    "strings": {"SS": ["a", "b"]},
    "numbers": {"NS": ["1", "2.5"]},
    "blobs": {"BS": [b"\x01", b"\x02\x03"]},
    "nested": {"M": {"list": {"L": [{"N": "1"}, {"M": {"deep": {"B": b"\x07"}}}, {"L": []}]}, "empty": {"M": {}}}},
}


def _table(dynamodb: Any, name: str) -> str:
    """A table of the emulator keyed by a string `pk`, for a test's own items."""
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


def test_items_come_back_from_the_emulator_as_they_went_in_and_as_motos_own_serializer_writes_them(
    stack: LocalStack,
) -> None:
    # Given an item with every attribute type, nested, in a table of the emulator
    dynamodb = boto3.client("dynamodb", region_name=stack.region)
    table = _table(dynamodb, "fidelity-items")
    dynamodb.put_item(TableName=table, Item=RICH_ITEM)

    # When it is read, queried and updated over HTTP
    got = dynamodb.get_item(TableName=table, Key={"pk": RICH_ITEM["pk"]}, ConsistentRead=True)["Item"]
    queried = dynamodb.query(
        TableName=table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": RICH_ITEM["pk"]}
    )["Items"]
    updated = dynamodb.update_item(
        TableName=table,
        Key={"pk": RICH_ITEM["pk"]},
        UpdateExpression="SET flag = :t",
        ExpressionAttributeValues={":t": {"BOOL": True}},
        ReturnValues="ALL_NEW",
    )["Attributes"]

    # Then every value comes back as it was written
    assert got == RICH_ITEM
    assert queried == [RICH_ITEM]
    assert updated == {**RICH_ITEM, "flag": {"BOOL": True}}

    # And the emulator's answer is, byte for byte, the one moto's own serializer writes
    from moto.core.serialize import JSONSerializer, ResponseSerializer, XFormedAttributePicker
    from moto.core.utils import get_service_model

    class MotosOwn(JSONSerializer):
        def _serialize_type_structure(self, serialized: Any, value: Any, shape: Any, key: str) -> None:
            ResponseSerializer._serialize_type_structure(self, serialized, value, shape, key)

    operation = get_service_model("dynamodb").operation_model("Query")
    result = {"Items": [RICH_ITEM, {"pk": {"S": "other"}}], "Count": 2, "ScannedCount": 2}
    answers = [
        serializer(operation_model=operation, value_picker=XFormedAttributePicker()).serialize(result)["body"]
        for serializer in (JSONSerializer, MotosOwn)
    ]
    assert answers[0] == answers[1]


def test_one_update_expression_with_other_values_and_items_writes_each_call_s_own(stack: LocalStack) -> None:
    """The emulator keeps each update expression's parsed tree: a second call with the same
    text writes its own values to its own item, and a bad expression is refused each time."""
    dynamodb = boto3.client("dynamodb", region_name=stack.region)
    table = _table(dynamodb, "same-expression")
    expression = "SET #n = :n, tags = list_append(if_not_exists(tags, :none), :tag) REMOVE gone"

    def update(key: str, n: int, tag: str) -> dict[str, Any]:
        return dynamodb.update_item(
            TableName=table,
            Key={"pk": {"S": key}},
            UpdateExpression=expression,
            ExpressionAttributeNames={"#n": "n"},
            ExpressionAttributeValues={":n": {"N": str(n)}, ":none": {"L": []}, ":tag": {"L": [{"S": tag}]}},
            ReturnValues="ALL_NEW",
        )["Attributes"]

    first = update("a", 1, "x")
    second = update("b", 2, "y")
    third = update("a", 3, "z")

    assert first == {"pk": {"S": "a"}, "n": {"N": "1"}, "tags": {"L": [{"S": "x"}]}}
    assert second == {"pk": {"S": "b"}, "n": {"N": "2"}, "tags": {"L": [{"S": "y"}]}}
    assert third == {"pk": {"S": "a"}, "n": {"N": "3"}, "tags": {"L": [{"S": "x"}, {"S": "z"}]}}
    for _ in range(2):
        with pytest.raises(ClientError) as refused:
            dynamodb.update_item(TableName=table, Key={"pk": {"S": "a"}}, UpdateExpression="SET n = = :n")
        assert refused.value.response["Error"]["Code"] == "ValidationException"


def test_a_function_s_structured_log_line_reads_as_words_at_the_stack_s_terminal() -> None:
    from taskrun.local.lambdas import readable

    line = (
        '{"level":"WARNING","location":"fire:179","message":"scheduled run refused","timestamp":"2026-12-07 16:00:00",'
        '"service":"taskrun","schedule_id":"nightly","error":"no task named \'mine/gone\'"}'
    )
    assert readable(line) == "WARNING scheduled run refused (schedule_id=nightly, error=no task named 'mine/gone')"
    # anything else is shown as it came: a print, a JSON value that is not a log record, half a line
    for other in ("hello {there}", '{"result": 1}', '{"level": "INFO"', "[1, 2]"):
        assert readable(other) == other


def test_the_stacks_own_calls_are_answered_in_its_process_as_over_http(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stack's process hands its own AWS calls to the emulator's WSGI app in process (no
    socket), from any botocore session made in it (moto's own clients, boto3's default one);
    what comes back is what the same call over HTTP (a sandbox's way) gets."""
    import botocore.httpsession

    from taskrun import aws

    sent: list[str] = []
    send = botocore.httpsession.URLLib3Session.send

    def counted(self: Any, request: Any) -> Any:
        sent.append(request.url)
        return send(self, request)

    monkeypatch.setattr(botocore.httpsession.URLLib3Session, "send", counted)
    over_http = boto3.session.Session()  # a session of its own, sending over HTTP: what a sandbox does
    over_http.events.unregister("before-send", stack.emulator.in_process_send)
    in_process = aws.session()
    results: dict[str, list[Any]] = {}
    for way, session in (("in process", in_process), ("over http", over_http)):
        before = len(sent)
        dynamodb = session.client("dynamodb", region_name=stack.region)
        s3 = session.client("s3", region_name=stack.region)
        lambda_ = session.client("lambda", region_name=stack.region)
        table = _table(dynamodb, f"own-calls-{way.replace(' ', '-')}")
        dynamodb.put_item(TableName=table, Item=RICH_ITEM)
        got = dynamodb.get_item(TableName=table, Key={"pk": RICH_ITEM["pk"]}, ConsistentRead=True)["Item"]
        with pytest.raises(ClientError) as bad_update:
            dynamodb.update_item(TableName=table, Key={"pk": {"S": "a"}}, UpdateExpression="SET n = = :n")
        bucket = f"own-calls-{way.replace(' ', '-')}"
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="a dir/ä+b%2F.bin", Body=bytes(range(256)) * 64)
        body = s3.get_object(Bucket=bucket, Key="a dir/ä+b%2F.bin")["Body"].read()
        arn = f"arn:aws:lambda:{stack.region}:123456789012:function:none/durable-execution/x/y"
        with pytest.raises(ClientError) as unknown_execution:
            lambda_.get_durable_execution(DurableExecutionArn=arn)
        results[way] = [
            got,
            bad_update.value.response["Error"],
            body == bytes(range(256)) * 64,
            unknown_execution.value.response["Error"]["Code"],
            unknown_execution.value.response["ResponseMetadata"]["HTTPStatusCode"],
        ]
        results[way].append(len(sent) - before)
    assert results["in process"][-1] == 0  # not one call went over a socket
    before = len(sent)
    fresh = boto3.session.Session().client("dynamodb", region_name=stack.region)
    assert fresh.describe_table(TableName="own-calls-in-process")["Table"]["TableStatus"] == "ACTIVE"
    assert len(sent) == before  # a session made now sends in process too
    assert results["over http"][-1] >= 8
    assert results["in process"][:-1] == results["over http"][:-1]
    assert results["in process"][2] is True


def test_one_condition_expression_with_other_names_and_values_decides_each_call_by_its_own(stack: LocalStack) -> None:
    """The emulator keeps each condition expression's tokens: the same text with other names,
    values and items is judged on its own, and a bad condition is refused each time."""
    dynamodb = boto3.client("dynamodb", region_name=stack.region)
    table = _table(dynamodb, "same-condition")
    for key, n in (("a", 1), ("b", 5)):
        dynamodb.put_item(TableName=table, Item={"pk": {"S": key}, "n": {"N": str(n)}, "m": {"N": "3"}})
    condition = "attribute_exists(pk) AND #f < :limit"

    def bump(key: str, field: str, limit: int) -> bool:
        try:
            dynamodb.update_item(
                TableName=table,
                Key={"pk": {"S": key}},
                UpdateExpression="SET done = :t",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#f": field},
                ExpressionAttributeValues={":limit": {"N": str(limit)}, ":t": {"BOOL": True}},
            )
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ConditionalCheckFailedException"
            return False
        return True

    assert [bump("a", "n", 2), bump("b", "n", 2), bump("b", "m", 4), bump("b", "n", 9), bump("c", "n", 9)] == [
        True,
        False,
        True,
        True,
        False,
    ]
    for _ in range(2):
        with pytest.raises(ClientError) as refused:
            dynamodb.update_item(
                TableName=table,
                Key={"pk": {"S": "a"}},
                UpdateExpression="SET done = :t",
                ConditionExpression="n < < :limit",
                ExpressionAttributeValues={":limit": {"N": "1"}, ":t": {"BOOL": True}},
            )
        assert refused.value.response["Error"]["Code"] == "ValidationException"
        assert "Invalid ConditionExpression: Syntax error" in refused.value.response["Error"]["Message"]
    # a Scan's filter with the same fault is refused in moto's own words, as before
    with pytest.raises(ClientError) as bad_filter:
        dynamodb.scan(
            TableName=table, FilterExpression="n < < :limit", ExpressionAttributeValues={":limit": {"N": "1"}}
        )
    assert bad_filter.value.response["Error"]["Code"] == "ValidationException"
    assert bad_filter.value.response["Error"]["Message"].startswith("Bad Filter Expression: Bad comparison")


def test_an_emulator_that_fails_a_call_in_process_answers_500_as_over_http() -> None:
    """A call handed to the emulator's app in process, which raises, comes back to the caller
    as the HTTP server would answer it: a 500 (botocore tries it again, then raises a
    ClientError), never the app's exception."""
    from taskrun.local.emulator import call_wsgi

    calls: list[str] = []

    def failing_app(environ: dict[str, Any], start_response: Any) -> Any:
        calls.append(environ["HTTP_X_AMZ_TARGET"])
        raise RuntimeError("a bug in the emulator")

    session = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    dynamodb = session.client("dynamodb", endpoint_url="http://127.0.0.1:9")
    dynamodb.meta.events.register("before-send", lambda request, **_: call_wsgi(failing_app, request, "127.0.0.1", "9"))
    with pytest.raises(ClientError) as failed:
        dynamodb.list_tables()
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert calls and set(calls) == {"DynamoDB_20120810.ListTables"}


def test_a_stopped_emulator_answers_no_more_calls_in_process() -> None:
    """A session made while an emulator served in process keeps its handler; once the emulator
    stops, the handler lets calls go over HTTP as before (to nothing, here), and a second stop
    is harmless."""
    from types import SimpleNamespace

    from botocore.config import Config
    from botocore.exceptions import EndpointConnectionError

    from taskrun.local.emulator import Emulator

    served: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        served.append(environ["HTTP_X_AMZ_TARGET"])
        start_response("200 OK", [("Content-Type", "application/x-amz-json-1.0")])
        return [b'{"TableNames": []}']

    nothing_listens = SimpleNamespace(endpoint="http://127.0.0.1:9")
    undo = Emulator._served_in_process(nothing_listens, app)  # type: ignore[arg-type]
    try:
        session = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
        once = Config(retries={"total_max_attempts": 1})
        dynamodb = session.client("dynamodb", endpoint_url="http://127.0.0.1:9", config=once)
        assert dynamodb.list_tables()["TableNames"] == []
    finally:
        undo()
    undo()
    with pytest.raises(EndpointConnectionError):
        dynamodb.list_tables()
    assert served == ["DynamoDB_20120810.ListTables"]


def test_a_stopped_durable_service_makes_no_engine_and_answers_503(tmp_path: Any) -> None:
    """A request to the durable execution API in a stop's last moments is refused, not served
    by an engine made anew (whose store and scheduler nothing would stop)."""
    from taskrun.local.durable import DurableEngine

    service = DurableEngine(runtime=None, region="us-east-1", folder=tmp_path)  # type: ignore[arg-type]
    service.stop()
    status, headers, body = service.serve({"REQUEST_METHOD": "GET", "PATH_INFO": "/2025-12-01/durable-executions/x"})
    assert status == 503 and headers["x-amzn-ErrorType"] == "ServiceException"
    assert b"stopping" in body
    assert not (tmp_path / "durable-executions.db").exists()


def test_an_app_that_never_starts_its_response_is_answered_500_in_process() -> None:
    from taskrun.local.emulator import call_wsgi

    session = boto3.session.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    dynamodb = session.client("dynamodb", endpoint_url="http://127.0.0.1:9")

    def silent(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        return []

    dynamodb.meta.events.register("before-send", lambda request, **_: call_wsgi(silent, request, "127.0.0.1", "9"))
    with pytest.raises(ClientError) as failed:
        dynamodb.list_tables()
    assert failed.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
