"""Reads template.yaml the way local mode needs it: functions, their routes, tables, settings.

Only the intrinsic functions the template uses are resolved (Ref, Fn::GetAtt, Fn::Sub,
Fn::Join); physical names are the logical ids, as a deployment would generate its own.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from taskrun.local.resources import (
    ACCOUNT_ID,
    LOCAL_STACK_UUID,
    QUEUE_ATTRIBUTES,
    DeclaredSchedule,
    EventRule,
    FunctionSpec,
    QueueSource,
    QueueSpec,
    Route,
    ScheduleSource,
    StateMachineSpec,
    StreamSource,
    rate_seconds,
)

try:  # libyaml's parser reads the template ten times as fast as PyYAML's own (~20 ms, not ~180)
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # a PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]


class _CloudFormationLoader(_SafeLoader):
    """YAML with the short forms of intrinsic functions (`!Ref X`, `!GetAtt X.Arn`, ...)."""


def _intrinsic(loader: SafeConstructor, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CloudFormationLoader.add_multi_constructor("!", _intrinsic)


def load_template(path: Path) -> dict[str, Any]:
    with path.open() as stream:
        return yaml.load(stream, Loader=_CloudFormationLoader)


class Stack:
    """The parts of a template that local mode stands up."""

    def __init__(self, path: Path, region: str, stack_name: str = "taskrun-local") -> None:
        self.path = path
        self.stack_name = stack_name
        self.root = path.parent
        self.region = region
        self.document = load_template(path)
        self.resources: dict[str, dict[str, Any]] = self.document["Resources"]
        self.parameters = {
            name: str(spec.get("Default", "")) for name, spec in self.document.get("Parameters", {}).items()
        }

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {name: res for name, res in self.resources.items() if res["Type"] == resource_type}

    def arn(self, logical_id: str) -> str:
        resource_type = self.resources.get(logical_id, {}).get("Type")  # SAM makes some (event rules)
        if resource_type == "AWS::Serverless::Function":
            named = self.resources[logical_id]["Properties"].get("FunctionName")
            name = str(self.resolve(named)) if named else logical_id
            return f"arn:aws:lambda:{self.region}:{ACCOUNT_ID}:function:{name}"
        if resource_type == "AWS::DynamoDB::Table":
            return f"arn:aws:dynamodb:{self.region}:{ACCOUNT_ID}:table/{logical_id}"
        if resource_type == "AWS::Serverless::StateMachine":
            return f"arn:aws:states:{self.region}:{ACCOUNT_ID}:stateMachine:{logical_id}"
        if resource_type == "AWS::SQS::Queue":
            return f"arn:aws:sqs:{self.region}:{ACCOUNT_ID}:{self.queue_name(logical_id)}"
        if resource_type == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{self.bucket_name(logical_id)}"
        if resource_type == "AWS::IAM::Role":
            return f"arn:aws:iam::{ACCOUNT_ID}:role/{logical_id}"
        return f"arn:aws:local:{self.region}:{ACCOUNT_ID}:{logical_id}"

    def bucket_name(self, logical_id: str) -> str:
        """A bucket's name as CloudFormation would make one (lowercase, from the stack's name)."""
        return f"{self.stack_name}-{logical_id}".lower()

    def buckets(self) -> list[str]:
        return [self.bucket_name(logical_id) for logical_id in self.of_type("AWS::S3::Bucket")]

    def bucket_cors(self) -> dict[str, list[dict[str, Any]]]:
        """Each bucket's CORS rules, as S3's PutBucketCors takes them."""
        renamed = {"MaxAge": "MaxAgeSeconds", "Id": "ID"}
        return {
            self.bucket_name(logical_id): [
                {renamed.get(key, key): value for key, value in rule.items()}
                for rule in resource.get("Properties", {}).get("CorsConfiguration", {}).get("CorsRules", [])
            ]
            for logical_id, resource in self.of_type("AWS::S3::Bucket").items()
        }

    def queue_name(self, logical_id: str) -> str:
        return str(self.resolve(self.resources[logical_id]["Properties"].get("QueueName", logical_id)))

    def queues(self) -> list[QueueSpec]:
        """The template's queues, each after the queue its messages are moved to."""
        specs = []
        for logical_id, resource in self.of_type("AWS::SQS::Queue").items():
            properties = self.resolve(resource.get("Properties", {}))
            attributes = {name: str(properties[name]) for name in QUEUE_ATTRIBUTES if name in properties}
            if "RedrivePolicy" in properties:
                attributes["RedrivePolicy"] = json.dumps(properties["RedrivePolicy"])
            specs.append(QueueSpec(self.queue_name(logical_id), attributes))
        return sorted(specs, key=lambda spec: "RedrivePolicy" in spec.attributes)

    def queue_sources(self) -> list[QueueSource]:
        return [
            QueueSource(
                function,
                self.queue_name(properties["Queue"]["Fn::GetAtt"][0]),
                int(properties.get("BatchSize", 10)),
                "ReportBatchItemFailures" in properties.get("FunctionResponseTypes", []),
            )
            for function, properties in self._events("SQS")
        ]

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if "Ref" in value:
            return self._ref(value["Ref"])
        if "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            if attribute in ("Arn", "StreamArn"):
                return self.arn(logical_id)
            if attribute == "QueueName":
                return self.queue_name(logical_id)
            return logical_id
        if "Fn::Sub" in value:
            text, variables = (value["Fn::Sub"], {}) if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"]

            def substitute(match: re.Match[str]) -> str:
                name = match.group(1)
                if name in variables:
                    return str(self.resolve(variables[name]))
                if "." in name:
                    return str(self.resolve({"Fn::GetAtt": name.split(".", 1)}))
                return str(self._ref(name))

            return re.sub(r"\$\{([^}!]+)\}", substitute, text)
        if "Fn::Join" in value:
            separator, items = value["Fn::Join"]
            return separator.join(str(self.resolve(item)) for item in items)
        if "Fn::Split" in value:
            separator, text = value["Fn::Split"]
            return str(self.resolve(text)).split(separator)
        if "Fn::Select" in value:
            index, items = value["Fn::Select"]
            return self.resolve(items)[int(index)]
        return {key: self.resolve(item) for key, item in value.items()}

    def _ref(self, name: str) -> str:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{ACCOUNT_ID}:stack/{self.stack_name}/"
            + LOCAL_STACK_UUID,
            "AWS::NoValue": "",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        api, _, part = name.partition(".")
        if part == "Stage" and self.resources.get(api, {}).get("Type") == "AWS::Serverless::Api":
            return str(self.resolve(self.resources[api]["Properties"]["StageName"]))  # SAM's Ref to the API's stage
        if name in self.resources:
            if self.resources[name]["Type"] == "AWS::Scheduler::ScheduleGroup":  # Ref is the group's name
                return str(self.resolve(self.resources[name]["Properties"]["Name"]))
            if self.resources[name]["Type"] == "AWS::S3::Bucket":  # Ref is the bucket's name
                return self.bucket_name(name)
            if self.resources[name]["Type"] == "AWS::SQS::Queue":  # Ref is the queue's URL
                return f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT_ID}/{self.queue_name(name)}"
            return name
        raise KeyError(f"{self.path}: Ref to unknown {name!r}")

    def functions(self) -> list[FunctionSpec]:
        globals_ = self.document.get("Globals", {}).get("Function", {})
        shared_env = globals_.get("Environment", {}).get("Variables", {})
        specs = []
        for logical_id, resource in self.of_type("AWS::Serverless::Function").items():
            properties = resource["Properties"]
            env = {**shared_env, **properties.get("Environment", {}).get("Variables", {})}
            invoke_config = properties.get("EventInvokeConfig", {})
            destination = invoke_config.get("DestinationConfig", {}).get("OnFailure", {})
            target = str(self.resolve(destination["Destination"])) if destination else None
            specs.append(
                FunctionSpec(
                    logical_id=logical_id,
                    code_uri=self.root / properties["CodeUri"],
                    handler=properties["Handler"],
                    timeout=int(properties.get("Timeout", globals_.get("Timeout", 3))),
                    memory=int(properties.get("MemorySize", globals_.get("MemorySize", 128))),
                    environment={name: str(self.resolve(v)) for name, v in env.items()},
                    on_failure=target if destination.get("Type") == "Lambda" else None,
                    on_failure_queue=_queue_of(target) if destination.get("Type") == "SQS" else None,
                    async_retries=int(invoke_config.get("MaximumRetryAttempts", 2)),
                    max_event_age=float(invoke_config.get("MaximumEventAgeInSeconds", 21600)),
                    layers=tuple(layer["Ref"] for layer in properties.get("Layers", []) if "Ref" in layer),
                    name=str(self.resolve(properties["FunctionName"])) if "FunctionName" in properties else None,
                    durable_timeout=(
                        int(self.resolve(properties["DurableConfig"]["ExecutionTimeout"]))
                        if "DurableConfig" in properties
                        else None
                    ),
                )
            )
        return specs

    def routes(self) -> list[Route]:
        apis = self.of_type("AWS::Serverless::Api")
        api_auth = {name: resource["Properties"].get("Auth", {}) for name, resource in apis.items()}
        routes = []
        for logical_id, properties in self._events("Api"):
            default = api_auth.get(properties.get("RestApiId", {}).get("Ref"), {})
            auth = properties.get("Auth", {})
            authorizer = auth.get("Authorizer", default.get("DefaultAuthorizer"))
            routes.append(
                Route(
                    method=properties["Method"].upper(),
                    path=properties["Path"],
                    function=logical_id,
                    authorized=bool(authorizer) and authorizer != "NONE",
                    pattern=_route_pattern(properties["Path"]),
                    api_key_required=bool(auth.get("ApiKeyRequired", default.get("ApiKeyRequired", False))),
                )
            )
        return sorted(routes, key=lambda route: route.specificity)

    def state_machines(self) -> list[StateMachineSpec]:
        specs = []
        for logical_id, resource in self.of_type("AWS::Serverless::StateMachine").items():
            properties = resource["Properties"]
            specs.append(
                StateMachineSpec(
                    logical_id=logical_id,
                    name=str(self.resolve(properties.get("Name", logical_id))),
                    definition=self.root / properties["DefinitionUri"],
                    substitutions={
                        name: str(self.resolve(value))
                        for name, value in properties.get("DefinitionSubstitutions", {}).items()
                    },
                    role=str(self.resolve(properties["Role"])) if "Role" in properties else None,
                )
            )
        return specs

    def _events(self, event_type: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (logical_id, event["Properties"])
            for logical_id, resource in self.of_type("AWS::Serverless::Function").items()
            for event in resource["Properties"].get("Events", {}).values()
            if event["Type"] == event_type
        ]

    def event_rules(self) -> list[EventRule]:
        return [
            EventRule(function, self.resolve(properties["Pattern"]))
            for function, properties in self._events("EventBridgeRule")
        ]

    def stream_sources(self) -> list[StreamSource]:
        return [
            StreamSource(
                function,
                properties["Stream"]["Fn::GetAtt"][0],
                int(properties.get("BatchSize", 100)),
                [json.loads(f["Pattern"]) for f in properties.get("FilterCriteria", {}).get("Filters", [])],
                max_retries=int(properties.get("MaximumRetryAttempts", 0)),
                on_failure_queue=_queue_of(
                    str(self.resolve(properties.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")))
                )
                if properties.get("DestinationConfig")
                else None,
            )
            for function, properties in self._events("DynamoDB")
        ]

    def schedule_groups(self) -> list[str]:
        return [
            str(self.resolve(resource["Properties"]["Name"]))
            for resource in self.of_type("AWS::Scheduler::ScheduleGroup").values()
        ]

    def declared_schedules(self) -> list[DeclaredSchedule]:
        found = []
        for logical_id, resource in self.of_type("AWS::Scheduler::Schedule").items():
            properties = resource["Properties"]
            target = properties["Target"]
            found.append(
                DeclaredSchedule(
                    name=str(self.resolve(properties.get("Name", logical_id))),
                    expression=str(properties["ScheduleExpression"]),
                    timezone=str(properties.get("ScheduleExpressionTimezone", "UTC")),
                    enabled=properties.get("State", "ENABLED") == "ENABLED",
                    function=target["Arn"]["Fn::GetAtt"][0],
                    input=json.loads(self.resolve(target.get("Input", "{}"))),
                )
            )
        return found

    def schedules(self) -> list[ScheduleSource]:
        return [
            ScheduleSource(function, rate_seconds(properties["Schedule"]), rule)
            for function, rule, properties in self._named_events("Schedule")
        ]

    def _named_events(self, event_type: str) -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (logical_id, logical_id + name, event["Properties"])
            for logical_id, resource in self.of_type("AWS::Serverless::Function").items()
            for name, event in resource["Properties"].get("Events", {}).items()
            if event["Type"] == event_type
        ]

    def flow_role(self) -> str | None:
        """The role the template's flows share (a flow of a tasks directory gets it too, as
        docs/deploy.md tells a flow's author to give it), if they share one."""
        roles = {machine.role for machine in self.state_machines()}
        return roles.pop() if len(roles) == 1 else None

    def authorizer_function(self) -> str | None:
        for resource in self.of_type("AWS::Serverless::Api").values():
            auth = resource["Properties"].get("Auth", {})
            default = auth.get("DefaultAuthorizer")
            if default:
                return str(auth["Authorizers"][default]["FunctionArn"]["Fn::GetAtt"][0])
        return None

    def stage_throttle(self) -> tuple[float, float] | None:
        """The API stage's throttle (rate a second, burst) for every route, if it sets one."""
        for resource in self.of_type("AWS::Serverless::Api").values():
            for setting in resource["Properties"].get("MethodSettings", []):
                if setting.get("ResourcePath") == "/*" and "ThrottlingRateLimit" in setting:
                    rate = float(self.resolve(setting["ThrottlingRateLimit"]))
                    return rate, float(self.resolve(setting.get("ThrottlingBurstLimit", rate)))
        return None

    def usage_plan_resources(self) -> list[tuple[str, str, dict[str, Any]]]:
        """The API Gateway usage plans, API keys and usage-plan keys of the template, in the
        order they can be made: (logical id, type, resolved properties)."""
        order = ("AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::ApiKey", "AWS::ApiGateway::UsagePlanKey")
        return [
            (logical_id, resource_type, self.resolve(resource.get("Properties", {})))
            for resource_type in order
            for logical_id, resource in self.of_type(resource_type).items()
        ]

    def gateway_responses(self) -> dict[str, tuple[int, str]]:
        """Gateway response type → (status, body), as the REST API would answer them."""
        answers = {}
        for resource in self.of_type("AWS::Serverless::Api").values():
            for kind, spec in resource["Properties"].get("GatewayResponses", {}).items():
                body = spec.get("ResponseTemplates", {}).get("application/json", "")
                answers[kind] = (int(spec["StatusCode"]), body)
        return answers


def _route_pattern(path: str) -> re.Pattern[str]:
    regex = ""
    for part in re.split(r"(\{[^}]+\})", path):
        if part.startswith("{") and part.endswith("+}"):
            regex += f"(?P<{part[1:-2]}>.+)"
        elif part.startswith("{"):
            regex += f"(?P<{part[1:-1]}>[^/]+)"
        else:
            regex += re.escape(part)
    return re.compile(f"^{regex}$")


def _queue_of(arn: str | None) -> str | None:
    """The queue name in an SQS ARN."""
    return arn.rpartition(":")[2] if arn and ":sqs:" in arn else None
