"""template.yaml is the one source of routes and resources: check it agrees with the code."""

from __future__ import annotations

import copy
import fnmatch
import json
import logging
import re
from pathlib import Path
from typing import Any

import httpx

from taskrun.local.iam import role_policies
from taskrun.local.stack import LocalStack
from taskrun.local.template import Stack
from taskrun.local.throttle import Throttle
from tests.conftest import API_KEY, EVENTS, GENEROUS, ROOT


def test_every_route_in_the_template_reaches_a_handler_route(stack: LocalStack) -> None:
    for route in stack.stack.routes():
        path = re.sub(r"\{[^}]+\+\}", "examples/greet", route.path)
        path = re.sub(r"\{[^}]+\}", "run_00000000000000000000000000", path)
        response = stack.gateway.handle(
            route.method, path, {"X-API-KEY": API_KEY, "Content-Type": "application/json"}, b"{}"
        )
        assert response.status < 500, (route.path, response.body)
        if response.status == 404:
            assert not json.loads(response.body)["detail"].startswith("no such route"), route.path


def test_every_function_has_its_code_and_a_sample_event() -> None:
    stack = Stack(ROOT / "template.yaml", "us-east-1")
    event_names = {path.stem for path in EVENTS.glob("*.json")}
    for function in stack.functions():
        assert (function.code_uri / "app.py").exists(), function.logical_id
        folder = function.code_uri.name
        assert any(name == folder or name.startswith(folder + "_") for name in event_names), folder
        for name in function.environment:
            assert name.startswith(("TASKRUN_", "POWERTOOLS_")), name


def test_api_functions_wait_no_longer_than_their_lambda_timeout() -> None:
    stack = Stack(ROOT / "template.yaml", "us-east-1")
    max_wait = float(stack.parameters["MaxWaitSeconds"])
    for function in stack.functions():
        if "TASKRUN_WORKER_FUNCTION" in function.environment or function.logical_id == "GetRunFunction":
            assert function.timeout > max_wait, function.logical_id


def test_a_stack_reaches_none_of_the_flows_of_a_stack_whose_name_it_prefixes() -> None:
    """`taskrun` and `taskrun-prod` side by side: no policy or event pattern of the first
    matches a state machine or execution of the second (nor the other way round)."""
    dev, prod = (Stack(ROOT / "template.yaml", "us-east-1", name) for name in ("taskrun", "taskrun-prod"))

    def patterns(stack: Stack) -> list[str]:
        found: list[str] = []

        def walk(value: object) -> None:
            if isinstance(value, dict):
                for key, item in value.items():
                    if key == "prefix" and isinstance(item, str):
                        found.append(item + "*")
                    walk(item)
            elif isinstance(value, list):
                for item in value:
                    walk(item)
            elif isinstance(value, str) and ":states:" in value:
                found.append(value)

        walk(stack.resolve(stack.resources))
        walk(stack.resolve(stack.document["Globals"]))
        return found

    def flows(stack: Stack) -> list[str]:
        machines = [f"arn:aws:states:us-east-1:123456789012:stateMachine:{m.name}" for m in stack.state_machines()]
        return machines + [arn.replace(":stateMachine:", ":execution:") + ":run_1" for arn in machines]

    for mine, theirs in ((dev, prod), (prod, dev)):
        own = patterns(mine)
        assert any(fnmatch.fnmatchcase(arn, pattern) for arn in flows(mine) for pattern in own)
        for pattern in own:
            for arn in flows(theirs):
                assert not fnmatch.fnmatchcase(arn, pattern), (mine.stack_name, pattern, arn)


def _actions(resource: dict[str, object]) -> list[str]:
    """Every IAM action a function's policies grant (SAM policy templates by name)."""
    found: list[str] = []
    for policy in resource["Properties"].get("Policies", []):  # type: ignore[attr-defined]
        if isinstance(policy, str):
            found.append(policy)
        elif "Statement" in policy:
            for statement in policy["Statement"]:
                action = statement["Action"]
                found += action if isinstance(action, list) else [action]
        else:
            found += list(policy)
    return found


def test_every_asynchronous_path_ends_somewhere_an_operator_sees() -> None:
    """A function invoked asynchronously (Lambda destinations, EventBridge, schedules, a
    stream) has an on-failure destination; events EventBridge cannot hand over are
    dead-lettered; the dead-letter queue has an alarm."""
    stack = Stack(ROOT / "template.yaml", "us-east-1")
    resources = stack.resources
    invoked_async = {spec.on_failure.rpartition(":")[2] for spec in stack.functions() if spec.on_failure}
    for logical_id, resource in stack.of_type("AWS::Serverless::Function").items():
        events = resource["Properties"].get("Events", {}).values()
        kinds = {event["Type"] for event in events}
        if logical_id in invoked_async or kinds & {"EventBridgeRule", "Schedule"}:
            destination = resource["Properties"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
            assert destination["Type"] in ("SQS", "Lambda"), logical_id
        for event in events:
            if event["Type"] in ("EventBridgeRule", "Schedule"):
                assert "Arn" in event["Properties"]["DeadLetterConfig"], logical_id
            if event["Type"] == "DynamoDB":
                assert event["Properties"]["DestinationConfig"]["OnFailure"]["Type"] == "SQS", logical_id
                assert event["Properties"]["MaximumRetryAttempts"] >= 1
    worker = resources["WorkerFunction"]["Properties"]
    assert worker["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]["Type"] == "Lambda"
    alarmed = {
        json.dumps(alarm["Properties"].get("Dimensions", []))
        for alarm in stack.of_type("AWS::CloudWatch::Alarm").values()
    }
    assert any("DeadLetterQueue" in dimensions for dimensions in alarmed)


def test_the_sweeper_knows_how_long_a_worker_invocation_may_wait() -> None:
    from taskrun.runs.sweeper import DISPATCH_MAX_AGE_SECONDS, LONGEST_SCRIPT_SECONDS

    stack = Stack(ROOT / "template.yaml", "us-east-1")
    worker = stack.resources["WorkerFunction"]["Properties"]
    assert worker["EventInvokeConfig"]["MaximumEventAgeInSeconds"] == DISPATCH_MAX_AGE_SECONDS
    assert worker["Timeout"] == LONGEST_SCRIPT_SECONDS
    assert any(schedule.function == "SweeperFunction" for schedule in stack.schedules())


def test_the_stack_has_what_an_operator_expects() -> None:
    stack = Stack(ROOT / "template.yaml", "us-east-1")
    document = stack.document
    globals_ = document["Globals"]
    # logs: one JSON log group for the functions, access logs, flow logs, all with retention
    # the LogLevel parameter reaches Lambda's own filter, Powertools and the tasks' logs
    assert globals_["Function"]["LoggingConfig"] == {
        "LogFormat": "JSON",
        "LogGroup": {"Ref": "FunctionsLogGroup"},
        "ApplicationLogLevel": {"Ref": "LogLevel"},
        "SystemLogLevel": "WARN",
    }
    variables = globals_["Function"]["Environment"]["Variables"]
    assert variables["POWERTOOLS_LOG_LEVEL"] == variables["TASKRUN_LOG_LEVEL"] == {"Ref": "LogLevel"}
    assert variables["POWERTOOLS_SERVICE_NAME"] == "taskrun"
    log_groups = stack.of_type("AWS::Logs::LogGroup")
    assert set(log_groups) >= {"FunctionsLogGroup", "ApiAccessLogGroup", "FlowsLogGroup"}
    assert all(group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"} for group in log_groups.values())
    api = stack.resources["TaskrunApi"]["Properties"]
    assert api["AccessLogSetting"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert api["MethodSettings"][0]["ThrottlingRateLimit"] == {"Ref": "ThrottlingRateLimit"}
    assert globals_["Api"]["OpenApiVersion"] == "3.0.1"
    # the worker's concurrency can be reserved; flows log and trace
    assert "HasWorkerReservedConcurrency" in json.dumps(stack.resources["WorkerFunction"]["Properties"])
    for machine in stack.of_type("AWS::Serverless::StateMachine").values():
        assert machine["Properties"]["Logging"]["Level"] in ("ERROR", "ALL")
        assert machine["Properties"]["Tracing"] == {"Enabled": True}
    # alarms notify the topic; a dashboard shows them
    alarms = stack.of_type("AWS::CloudWatch::Alarm")
    assert len(alarms) >= 5 and all(a["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}] for a in alarms.values())
    body = json.loads(stack.resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"])
    shown = [arn for widget in body["widgets"] for arn in widget["properties"].get("alarms", [])]
    assert set(alarms) <= {arn.removeprefix("${").removesuffix(".Arn}") for arn in shown}


def test_functions_get_only_the_table_actions_their_code_uses() -> None:
    stack = Stack(ROOT / "template.yaml", "us-east-1")
    used = {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:Query"}
    for logical_id, resource in stack.of_type("AWS::Serverless::Function").items():
        for action in _actions(resource):
            assert not action.startswith("DynamoDB"), (logical_id, action)  # SAM's broad table templates
            if action == "dynamodb:DeleteItem":
                assert logical_id == "SchedulesFunction", logical_id  # DELETE /v1/schedules/{id}
            elif action == "dynamodb:Scan":
                assert logical_id == "KeysFunction", logical_id  # GET /v1/keys: a handful of keys
            elif action == "dynamodb:BatchGetItem":  # a page of runs, read by the keys an index gave
                assert logical_id in ("ListRunsFunction", "SweeperFunction"), logical_id
            elif action.startswith("dynamodb:"):
                assert action in used, (logical_id, action)


def test_no_partition_is_written_out() -> None:
    """`arn:aws:` would break in aws-cn and aws-us-gov; ARNs take `${AWS::Partition}`."""
    for path in [ROOT / "template.yaml", *(ROOT / "statemachines").glob("*.asl.json")]:
        assert "arn:aws:" not in path.read_text(), path.name


def test_alarms_may_publish_to_their_encrypted_topic() -> None:
    """CloudWatch alarms cannot use the AWS-managed SNS key: the topic's key is the stack's
    own, and its policy lets CloudWatch use it."""
    stack = Stack(ROOT / "template.yaml", "us-east-1")
    for topic in stack.of_type("AWS::SNS::Topic").values():
        key = topic["Properties"].get("KmsMasterKeyId")
        if key is None:
            continue
        assert isinstance(key, dict) and "Ref" in key, f"{key!r}: CloudWatch alarms cannot use an AWS-managed key"
        policy = stack.resources[key["Ref"]]["Properties"]["KeyPolicy"]
        for_cloudwatch = [
            s for s in policy["Statement"] if s.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}
        ]
        granted = {action for statement in for_cloudwatch for action in statement["Action"]}
        assert {"kms:Decrypt", "kms:GenerateDataKey*"} <= granted


def test_buckets_outlive_the_stack_and_take_only_tls() -> None:
    stack = Stack(ROOT / "template.yaml", "us-east-1")
    policies = [policy["Properties"] for policy in stack.of_type("AWS::S3::BucketPolicy").values()]
    for logical_id, bucket in stack.of_type("AWS::S3::Bucket").items():
        # a bucket holding objects cannot be deleted with its stack: kept, so the stack can go
        assert bucket.get("DeletionPolicy") == "Retain" and bucket.get("UpdateReplacePolicy") == "Retain", logical_id
        (policy,) = [p["PolicyDocument"] for p in policies if p["Bucket"] == {"Ref": logical_id}]
        assert any(
            statement["Effect"] == "Deny"
            and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            and statement["Action"] == "s3:*"
            for statement in policy["Statement"]
        ), logical_id


# API Gateway's own answers a REST API can give (each a gateway response type)
GATEWAY_ANSWERS = {
    "UNAUTHORIZED": 401,
    "ACCESS_DENIED": 403,
    "INVALID_API_KEY": 403,
    "MISSING_AUTHENTICATION_TOKEN": 404,
    "RESOURCE_NOT_FOUND": 404,
    "BAD_REQUEST_BODY": 400,
    "BAD_REQUEST_PARAMETERS": 400,
    "REQUEST_TOO_LARGE": 413,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "THROTTLED": 429,
    "QUOTA_EXCEEDED": 429,
    "AUTHORIZER_FAILURE": 500,
    "AUTHORIZER_CONFIGURATION_ERROR": 500,
    "API_CONFIGURATION_ERROR": 500,
    "INTEGRATION_FAILURE": 502,
    "INTEGRATION_TIMEOUT": 504,
}


def test_every_answer_of_api_gateway_itself_is_a_problem() -> None:
    (api,) = Stack(ROOT / "template.yaml", "us-east-1").of_type("AWS::Serverless::Api").values()
    responses = api["Properties"]["GatewayResponses"]
    for kind, status in GATEWAY_ANSWERS.items():
        assert kind in responses, kind
        spec = responses[kind]
        assert spec["StatusCode"] == str(status), kind
        assert spec["ResponseParameters"]["Headers"]["Content-Type"] == "'application/problem+json'", kind
        problem = json.loads(spec["ResponseTemplates"]["application/json"])
        assert problem["status"] == status and problem["type"].startswith("urn:taskrun:problem:"), kind
        assert problem["detail"] and problem["errors"] == [], kind


def test_a_route_that_does_not_exist_is_the_templates_404_problem(anonymous: Any) -> None:
    answer = anonymous.get("/v1/nothing-here")
    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["detail"].startswith("no such route")


def test_invoke_grants_name_the_worker_exactly() -> None:
    """`function:<name>*` would also let a role invoke every function whose name starts so."""
    stack = Stack(ROOT / "template.yaml", "us-east-1")
    arns = {stack.arn(logical_id) for logical_id in stack.of_type("AWS::Serverless::Function")}
    for function, policies in role_policies(stack).items():
        for policy in policies:
            for statement in policy["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                if "lambda:InvokeFunction" not in actions:
                    continue
                resources = (
                    statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                )
                for resource in resources:
                    unqualified = resource.removesuffix(":*").removesuffix(":live")  # its versions, its alias
                    assert resource in arns or unqualified in arns, (function, resource)


def test_the_notifier_hears_only_of_runs_that_have_ended_or_of_limited_runs() -> None:
    """Every pattern asks for an ended status, or for a run of a limited task (`slots`) that
    went back to the queue for a retry, or for one newly waiting for room (`waiting_for`)."""
    stack = Stack(ROOT / "template.yaml", "us-east-1")
    (source,) = [s for s in stack.stream_sources() if s.function == "NotifierFunction"]
    ended = ["cancelled", "failed", "succeeded", "timed_out"]
    assert source.filters, "no filter: every change of every run would invoke it"
    for pattern in source.filters:
        new = pattern["dynamodb"]["NewImage"]
        if sorted(new.get("status", {}).get("S", [])) == ended:
            continue
        if new.get("status", {}).get("S") == ["queued"]:
            assert new["slots"] == {"S": [{"exists": True}]}, pattern
            assert pattern["dynamodb"]["OldImage"]["status"]["S"] == ["running"], pattern
            continue
        assert new == {"waiting_for": {"S": [{"exists": True}]}}, pattern
        assert pattern["dynamodb"]["OldImage"] == {"waiting_for": [{"exists": False}]}, pattern


# Names the template makes from the stack's name, and AWS's limit on each
NAME_LIMITS = {
    ("AWS::SQS::Queue", "QueueName"): 80,
    ("AWS::Scheduler::ScheduleGroup", "Name"): 64,
    ("AWS::Scheduler::Schedule", "Name"): 64,
    ("AWS::Serverless::StateMachine", "Name"): 80,
    ("AWS::Serverless::LayerVersion", "LayerName"): 140,
    ("AWS::CloudWatch::Alarm", "AlarmName"): 255,
    ("AWS::Logs::LogGroup", "LogGroupName"): 512,
    ("AWS::WAFv2::WebACL", "Name"): 128,
}
LONGEST_STACK_NAME = 62  # what docs/deploy.md promises


def test_every_name_made_from_the_stack_name_fits_for_the_longest_stack_name_the_docs_allow() -> None:
    stack = Stack(ROOT / "template.yaml", "us-east-1")
    tightest = 128
    for (resource_type, field), limit in NAME_LIMITS.items():
        for logical_id, resource in stack.of_type(resource_type).items():
            name = resource["Properties"].get(field)
            if not (isinstance(name, dict) and "${AWS::StackName}" in str(name.get("Fn::Sub", ""))):
                continue
            rest = len(str(name["Fn::Sub"]).replace("${AWS::StackName}", ""))
            tightest = min(tightest, limit - rest)
            assert LONGEST_STACK_NAME + rest <= limit, (logical_id, field)
    assert tightest == LONGEST_STACK_NAME  # the bound is the tightest name's, no looser
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    assert f"at most {LONGEST_STACK_NAME} characters" in deploy


def test_the_deploy_guide_counts_the_functions_and_names_only_outputs_the_stack_has() -> None:
    stack = Stack(ROOT / "template.yaml", "us-east-1")
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    functions = len(stack.of_type("AWS::Serverless::Function"))
    layers = len(stack.of_type("AWS::Serverless::LayerVersion"))
    assert f"the {layers} layers and the {functions} functions" in deploy
    named = set(re.findall(r"OutputKey=='(\w+)'", deploy)) | set(re.findall(r"output `(\w+)`", deploy, re.IGNORECASE))
    outputs = set(stack.document["Outputs"])
    assert named and named <= outputs, named - outputs


def _deployed(parameters: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The resources CloudFormation would make of the template as the SAM transform turns it
    out with these parameters (the others at their defaults): a resource whose condition
    does not hold is left out."""
    from samtranslator.translator.transform import transform

    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    stack = Stack(ROOT / "template.yaml", "us-east-1")
    document = copy.deepcopy(stack.document)
    for resource in document["Resources"].values():
        properties = resource.get("Properties", {})
        for name in ("CodeUri", "DefinitionUri", "ContentUri"):
            if isinstance(properties.get(name), str):
                properties[name] = f"s3://local/{name}"  # the transform wants code in S3

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    values = {**stack.parameters, **parameters}
    translated = transform(document, values, NoManagedPolicies())
    conditions = translated.get("Conditions", {})

    def evaluate(value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        ((function, argument),) = value.items()
        if function == "Ref":
            return values[argument]
        if function == "Condition":
            return evaluate(conditions[argument])
        if function == "Fn::Not":
            return not evaluate(argument[0])
        if function == "Fn::Equals":
            return str(evaluate(argument[0])) == str(evaluate(argument[1]))
        if function == "Fn::And":
            return all(evaluate(item) for item in argument)
        if function == "Fn::Or":
            return any(evaluate(item) for item in argument)
        raise ValueError(f"a condition function this test does not evaluate: {function}")

    return {
        logical_id: resource
        for logical_id, resource in translated["Resources"].items()
        if "Condition" not in resource or evaluate(conditions[resource["Condition"]])
    }


def test_a_web_acl_limits_each_client_address_in_front_of_the_stage_only_when_asked() -> None:
    def of_type(resources: dict[str, dict[str, Any]], resource_type: str) -> dict[str, dict[str, Any]]:
        return {name: resource for name, resource in resources.items() if resource["Type"] == resource_type}

    # Given the template with its default parameters: no web ACL, nothing associated; and a
    # limit under WAF's least (10) refused before anything is made
    template = Stack(ROOT / "template.yaml", "us-east-1")
    allowed = re.compile(template.document["Parameters"]["WafRateLimit"]["AllowedPattern"])
    assert [limit for limit in ("0", "5", "010", "10", "3000") if allowed.fullmatch(limit)] == ["0", "10", "3000"]
    by_default = _deployed({})
    assert not [name for name, resource in by_default.items() if resource["Type"].startswith("AWS::WAFv2::")]
    # When WafRateLimit is set
    resources = _deployed({"WafRateLimit": "600"})
    # Then a regional web ACL lets everything through but an address past its rate
    ((acl_id, acl),) = of_type(resources, "AWS::WAFv2::WebACL").items()
    properties = acl["Properties"]
    assert properties["Scope"] == "REGIONAL" and properties["DefaultAction"] == {"Allow": {}}
    (rule,) = properties["Rules"]
    rate = rule["Statement"]["RateBasedStatement"]
    assert rate["AggregateKeyType"] == "IP" and rate["Limit"] == {"Ref": "WafRateLimit"}
    # refused with the same 429 problem the stage's throttle answers
    block = rule["Action"]["Block"]["CustomResponse"]
    problem = json.loads(properties["CustomResponseBodies"][block["CustomResponseBodyKey"]]["Content"])
    (api,) = template.of_type("AWS::Serverless::Api").values()
    throttled = json.loads(api["Properties"]["GatewayResponses"]["THROTTLED"]["ResponseTemplates"]["application/json"])
    assert block["ResponseCode"] == problem["status"] == 429 and problem["type"] == throttled["type"]
    for visibility in (properties["VisibilityConfig"], rule["VisibilityConfig"]):
        assert visibility["CloudWatchMetricsEnabled"] and visibility["SampledRequestsEnabled"]
    # and it is associated with the API's stage, which it names by Ref: made after the stage
    ((stage_id, stage),) = of_type(resources, "AWS::ApiGateway::Stage").items()
    assert stage["Properties"]["RestApiId"] == {"Ref": "TaskrunApi"}
    ((_, association),) = of_type(resources, "AWS::WAFv2::WebACLAssociation").items()
    assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": [acl_id, "Arn"]}
    assert association["Properties"]["ResourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${TaskrunApi}/stages/${" + stage_id + "}"
    }


def test_a_flood_of_wrong_keys_is_counted_by_the_stages_throttle_before_the_authorizer(
    stack: LocalStack, base_url: str, api: httpx.Client
) -> None:
    """As on AWS: the stage's throttle counts a request before the authorizer sees it, so
    wrong keys cost the authorizer no more than the stage's rate (and take from it: what
    keeps one address from taking all of it is the optional web ACL, WafRateLimit)."""
    stack.gateway.throttle = Throttle(stage_rate=0.2, stage_burst=3, key_rate=10_000, key_burst=10_000)
    try:
        # When wrong keys arrive faster than the stage's rate
        with httpx.Client(base_url=base_url, headers={"X-API-KEY": "wrong"}, timeout=60) as flood:
            statuses = [flood.get("/v1/runs").status_code for _ in range(6)]
        # Then the authorizer refused the stage's burst, and the rest were throttled unread
        assert statuses == [401] * 3 + [429] * 3
        # and a valid key finds the stage's rate spent as well
        assert api.get("/v1/runs").status_code == 429
    finally:
        stack.gateway.throttle = GENEROUS


def test_the_translated_roles_are_kept_owner_only_and_read_back_for_the_same_stack(tmp_path: Path) -> None:
    stack = Stack(ROOT / "template.yaml", "us-east-1")
    cache = tmp_path / "cache"
    computed_boundaries: dict[str, Any] = {}
    computed = role_policies(stack, computed_boundaries)
    # the first start keeps what the transform made, owner only
    boundaries: dict[str, Any] = {}
    assert role_policies(stack, boundaries, cache) == computed and boundaries == computed_boundaries
    (kept,) = cache.iterdir()
    assert kept.stat().st_mode & 0o777 == 0o600 and cache.stat().st_mode & 0o777 == 0o700
    # the next reads it back (a kept file that said otherwise would be believed: it is the answer)
    assert role_policies(stack, {}, cache) == computed
    # another parameter is another stack: translated again, kept beside the first
    stack.parameters["WorkerReservedConcurrency"] = "7"
    role_policies(stack, {}, cache)
    assert len(list(cache.iterdir())) == 2
    # a damaged file is translated again, not trusted
    kept.write_text("{not json")
    assert role_policies(Stack(ROOT / "template.yaml", "us-east-1"), {}, cache) == computed
