"""Wiring: the objects a Lambda function uses, built once per cold start from the settings."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from taskrun.auth import DynamoKeyStore
from taskrun.cache import ResultCache
from taskrun.callbacks import Callbacks, CallbackStore
from taskrun.catalog import Catalog, catalog
from taskrun.deliveries import Deliveries, DeliveryQueue, DeliveryStore, RetrySchedule
from taskrun.dispatch import LambdaDispatcher, TaskDispatcher
from taskrun.files import FileStore
from taskrun.flows import StepFunctions
from taskrun.idempotency import IdempotencyStore
from taskrun.loader import load_task_dirs
from taskrun.models import Run, RunView
from taskrun.results import ResultStore, presented
from taskrun.schedules import EventBridgeScheduler, Schedules, ScheduleStore
from taskrun.service import RunService
from taskrun.settings import get_settings
from taskrun.store import DynamoRunStore
from taskrun.telemetry import metrics
from taskrun.webhooks import Signer
from taskrun.worker import Worker

logger = Logger()
tracer = Tracer()


@lru_cache(maxsize=1)
def task_catalog() -> Catalog:
    load_task_dirs(get_settings().task_dirs)
    return catalog


@lru_cache(maxsize=1)
def step_functions() -> StepFunctions:
    return StepFunctions(get_settings().state_machine_prefix)


@lru_cache(maxsize=1)
def callbacks() -> Callbacks:
    return Callbacks(CallbackStore(get_settings().callbacks_table), step_functions(), run_service().store)


@lru_cache(maxsize=1)
def run_service() -> RunService:
    settings = get_settings()
    flows = step_functions()
    return RunService(
        store=DynamoRunStore(settings.runs_table),
        dispatcher=TaskDispatcher(scripts=LambdaDispatcher(settings.worker_function), flows=flows),
        catalog=task_catalog(),
        settings=settings,
        flows=flows,
        cache=result_cache(),
        files=file_store(),
    )


@lru_cache(maxsize=1)
def worker() -> Worker:
    service = run_service()
    return Worker(store=service.store, catalog=service.catalog, results=result_store(), cache=service.cache)


@lru_cache(maxsize=1)
def file_store() -> FileStore | None:
    bucket = get_settings().files_bucket
    return FileStore(bucket) if bucket else None


@lru_cache(maxsize=1)
def result_cache() -> ResultCache | None:
    table = get_settings().cache_table
    return ResultCache(table) if table else None


@lru_cache(maxsize=1)
def result_store() -> ResultStore | None:
    bucket = get_settings().results_bucket
    return ResultStore(bucket) if bucket else None


def view(run: Run) -> RunView:
    """A run as the API answers it (a result kept in S3 as a fresh link)."""
    return presented(run, result_store())


@lru_cache(maxsize=1)
def schedules() -> Schedules:
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
    return IdempotencyStore(get_settings().idempotency_table)


@lru_cache(maxsize=1)
def deliveries() -> Deliveries:
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
    )


def _signer() -> Signer | None:
    """The signing secret: given itself (local mode), or read from Secrets Manager."""
    settings = get_settings()
    if settings.webhook_secret:
        return Signer(settings.webhook_secret)
    if settings.webhook_secret_arn:
        from aws_lambda_powertools.utilities import parameters

        return Signer(str(parameters.get_secret(settings.webhook_secret_arn, max_age=300)))
    return None


@lru_cache(maxsize=1)
def key_store() -> DynamoKeyStore:
    return DynamoKeyStore(get_settings().keys_table)


LambdaHandler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def api_handler(app: APIGatewayRestResolver) -> LambdaHandler:
    """The Lambda entry point of an API function: structured logs with the request id, traces."""

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST, clear_state=True)
    @tracer.capture_lambda_handler(capture_response=False)
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        return app.resolve(event, context)

    return handler


def plain_handler(function: LambdaHandler) -> LambdaHandler:
    """The Lambda entry point of a non-HTTP function, with the same logging and tracing."""
    traced = tracer.capture_lambda_handler(capture_response=False)(metrics.log_metrics(function))
    return logger.inject_lambda_context(clear_state=True)(traced)
