"""Wiring: the objects a Lambda function uses, built once per cold start from the settings.

Each is imported with its first use, so that a function loads only the parts of taskrun
it calls (the health function neither boto3 nor the catalog), and the X-Ray SDK only
where tracing is on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.shared.constants import TRACER_DISABLED_ENV
from aws_lambda_powertools.shared.functions import resolve_truthy_env_var_choice
from aws_lambda_powertools.utilities.typing import LambdaContext

from taskrun.settings import get_settings
from taskrun.telemetry import metrics

if TYPE_CHECKING:
    from http import HTTPStatus

    from aws_lambda_powertools.event_handler import APIGatewayRestResolver

    from taskrun.access.keys import CachedKeys, DynamoKeyStore
    from taskrun.access.usage import UsagePlan
    from taskrun.catalog.registry import Catalog
    from taskrun.catalog.secrets import SecretStore
    from taskrun.flows.callbacks import Callbacks
    from taskrun.flows.durable import DurableFlows
    from taskrun.flows.host import FlowHost
    from taskrun.flows.stepfunctions import StepFunctions
    from taskrun.models import Run, RunView
    from taskrun.results.bucket import ResultStore
    from taskrun.results.files import FileStore
    from taskrun.results.runlogs import LogStore
    from taskrun.runs.cache import ResultCache
    from taskrun.runs.concurrency import Admission
    from taskrun.runs.dispatch import LambdaDispatcher, Waker
    from taskrun.runs.idempotency import IdempotencyStore
    from taskrun.runs.service import RunService
    from taskrun.runs.worker import Worker
    from taskrun.schedules.service import Schedules
    from taskrun.webhooks.deliveries import Deliveries
    from taskrun.webhooks.send import Signer

logger = Logger()


def tracing_on() -> bool:
    """Traces are sent from Lambda when the function's tracing is on (not locally)."""
    disabled = resolve_truthy_env_var_choice(env=os.environ.get(TRACER_DISABLED_ENV, "false"))
    return not disabled and bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def _traced(function: Callable[..., Any]) -> Callable[..., Any]:
    if not tracing_on():
        return function
    from aws_lambda_powertools import Tracer

    return Tracer().capture_lambda_handler(capture_response=False)(function)


@lru_cache(maxsize=1)
def task_catalog() -> Catalog:
    from taskrun.catalog.loader import load_task_dirs
    from taskrun.catalog.registry import catalog

    task_dirs = get_settings().task_dirs
    catalog.load_with(lambda: load_task_dirs(task_dirs))  # by the first lookup that needs the tasks
    return catalog


@lru_cache(maxsize=1)
def step_functions() -> StepFunctions:
    from taskrun.flows.stepfunctions import StepFunctions

    return StepFunctions(get_settings().state_machine_prefix)


@lru_cache(maxsize=1)
def durable_flows() -> DurableFlows:
    from taskrun.flows.durable import DurableFlows

    return DurableFlows(get_settings().flow_function)


@lru_cache(maxsize=1)
def flow_host() -> FlowHost:
    from taskrun.flows.host import FlowHost
    from taskrun.runs.store import DynamoRunStore

    return FlowHost(
        task_catalog(), DynamoRunStore(get_settings().runs_table), durable_flows(), secret_store(), log_store()
    )


@lru_cache(maxsize=1)
def callbacks() -> Callbacks:
    from taskrun.flows.callbacks import Callbacks, CallbackStore

    return Callbacks(
        CallbackStore(get_settings().callbacks_table), step_functions(), run_service().store, durable_flows()
    )


@lru_cache(maxsize=1)
def run_service() -> RunService:
    from taskrun.flows.durable import FlowEngines
    from taskrun.runs.dispatch import TaskDispatcher
    from taskrun.runs.service import RunService
    from taskrun.runs.store import DynamoRunStore

    settings = get_settings()
    flows = FlowEngines(task_catalog(), step_functions(), durable_flows())
    return RunService(
        store=DynamoRunStore(settings.runs_table),
        dispatcher=TaskDispatcher(scripts=worker_dispatcher(), flows=flows),
        catalog=task_catalog(),
        settings=settings,
        flows=flows,
        waker=waker(),
        admission=admission(),
        cache=result_cache(),
        files=file_store(),
    )


@lru_cache(maxsize=1)
def worker() -> Worker:
    from taskrun.runs.worker import Worker

    service = run_service()
    return Worker(
        store=service.store,
        catalog=service.catalog,
        results=result_store(),
        cache=service.cache,
        waker=service.waker,
        flows=service.flows,
        secrets=secret_store(),
    )


@lru_cache(maxsize=1)
def secret_store() -> SecretStore | None:
    """Where tasks' secrets are read: a directory in local mode, else SSM under the stack's prefix."""
    from taskrun.catalog.secrets import DirectorySecrets, ParameterSecrets

    settings = get_settings()
    if settings.secrets_dir is not None:
        return DirectorySecrets(settings.secrets_dir)
    return ParameterSecrets(settings.secrets_prefix) if settings.secrets_prefix else None


@lru_cache(maxsize=1)
def admission() -> Admission | None:
    """Where limited runs take and give back their slots (None where the stack has no limits table)."""
    from taskrun.runs.concurrency import Admission, LimitStore
    from taskrun.runs.store import DynamoRunStore

    settings = get_settings()
    if not settings.limits_table:
        return None
    store = DynamoRunStore(settings.runs_table)
    return Admission(store=store, limits=LimitStore(settings.limits_table), dispatcher=worker_dispatcher())


@lru_cache(maxsize=1)
def worker_dispatcher() -> LambdaDispatcher:
    from taskrun.runs.dispatch import LambdaDispatcher

    return LambdaDispatcher(get_settings().worker_function)


@lru_cache(maxsize=1)
def waker() -> Waker | None:
    """Where queued runs wait for their start time (None where the stack has no wake machine)."""
    from taskrun.runs.dispatch import Waker

    arn = get_settings().wake_state_machine
    return Waker(arn) if arn else None


@lru_cache(maxsize=1)
def file_store() -> FileStore | None:
    from taskrun.results.files import FileStore

    bucket = get_settings().files_bucket
    return FileStore(bucket) if bucket else None


@lru_cache(maxsize=1)
def result_cache() -> ResultCache | None:
    from taskrun.runs.cache import ResultCache

    table = get_settings().cache_table
    return ResultCache(table) if table else None


@lru_cache(maxsize=1)
def result_store() -> ResultStore | None:
    from taskrun.results.bucket import ResultStore

    bucket = get_settings().results_bucket
    return ResultStore(bucket) if bucket else None


def log_store() -> LogStore | None:
    from taskrun.results.runlogs import LogStore

    bucket = get_settings().results_bucket
    return LogStore(bucket) if bucket else None


def view(run: Run) -> RunView:
    """A run as the API answers it (a result kept in S3 as a fresh link)."""
    from taskrun.results.bucket import presented

    return presented(task_catalog().shown(run), result_store())


@lru_cache(maxsize=1)
def schedules() -> Schedules:
    from taskrun.schedules.eventbridge import EventBridgeScheduler
    from taskrun.schedules.service import Schedules
    from taskrun.schedules.store import ScheduleStore

    settings = get_settings()
    scheduler = EventBridgeScheduler(
        group=settings.schedule_group,
        target_arn=settings.schedule_target_arn,
        role_arn=settings.scheduler_role_arn,
        dead_letter_arn=settings.dead_letter_arn,
    )
    return Schedules(ScheduleStore(settings.schedules_table), scheduler, run_service())


@lru_cache(maxsize=1)
def idempotency_keys() -> IdempotencyStore:
    from taskrun.runs.idempotency import IdempotencyStore

    return IdempotencyStore(get_settings().idempotency_table)


@lru_cache(maxsize=1)
def deliveries() -> Deliveries:
    from taskrun.runs.store import DynamoRunStore
    from taskrun.webhooks.deliveries import Deliveries, DeliveryQueue, RetrySchedule
    from taskrun.webhooks.store import DeliveryStore

    settings = get_settings()
    return Deliveries(
        store=DeliveryStore(settings.deliveries_table),
        queue=DeliveryQueue(settings.webhook_queue_url),
        runs=DynamoRunStore(settings.runs_table),
        results=result_store(),
        signer=_signer(),
        schedule=RetrySchedule(delays=tuple(settings.webhook_retry_delays)),
        timeout=settings.webhook_timeout_seconds,
        allow_private=settings.webhook_allow_private,
        shown=lambda run: task_catalog().shown(run),  # loads the tasks only for a run with secrets
    )


def _signer() -> Signer | None:
    """The signing secret: given itself (local mode), or read from Secrets Manager."""
    from taskrun.webhooks.send import Signer

    settings = get_settings()
    if settings.webhook_secret:
        return Signer(settings.webhook_secret)
    if settings.webhook_secret_arn:
        from aws_lambda_powertools.utilities import parameters

        return Signer(str(parameters.get_secret(settings.webhook_secret_arn, max_age=300)))
    return None


@lru_cache(maxsize=1)
def key_store() -> DynamoKeyStore:
    from taskrun.access.keys import DynamoKeyStore

    return DynamoKeyStore(get_settings().keys_table)


@lru_cache(maxsize=1)
def usage_plan() -> UsagePlan | None:
    """The stack's usage plan of the keys' throttle (None where the stack has none)."""
    from taskrun.access.usage import UsagePlan

    name = get_settings().usage_plan
    return UsagePlan(name) if name else None


@lru_cache(maxsize=1)
def cached_keys() -> CachedKeys:
    """The authorizer's keys: each valid key read once per `key_cache_seconds`."""
    from taskrun.access.keys import CachedKeys

    return CachedKeys(key_store(), get_settings().key_cache_seconds)


LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def api_handler(app: APIGatewayRestResolver, malformed_status: HTTPStatus | None = None) -> LambdaHandler:
    """The Lambda entry point of an API function: structured logs with the request id,
    traces; an ambiguous request refused (400), and a body that is not JSON refused before
    the resolver reads it (400 or 415, or always `malformed_status` where a route's
    contract names one status for them all)."""
    from taskrun.api import proxy_problem, refused_body, refused_request

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
    @_traced
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        if (ambiguous := refused_request(event)) is not None:
            return ambiguous
        refusal = refused_body(event)
        if refusal is not None:
            status, detail = refusal
            return proxy_problem(malformed_status or status, detail)
        return app.resolve(event, context)

    return handler


def plain_handler(function: LambdaHandler) -> LambdaHandler:
    """The Lambda entry point of a non-HTTP function, with the same logging and tracing."""
    traced = _traced(metrics.log_metrics(function))
    return logger.inject_lambda_context(clear_state=True)(traced)
