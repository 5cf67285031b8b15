"""Settings of every function, read from the environment once per cold start."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field

from taskrun.modelbase import Model

# Seconds between a webhook's attempts after the first (the delivery schedule's default).
WEBHOOK_DELAYS = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


class Settings(Model):
    runs_table: str = Field(description="DynamoDB table of runs (TASKRUN_RUNS_TABLE).")
    keys_table: str = Field(description="DynamoDB table of hashed API keys (TASKRUN_KEYS_TABLE).")
    worker_function: str = Field(description="Name or ARN of the worker Lambda (TASKRUN_WORKER_FUNCTION).")
    callbacks_table: str = Field(default="", description="DynamoDB table of flow callbacks (TASKRUN_CALLBACKS_TABLE).")
    schedules_table: str = Field(default="", description="DynamoDB table of schedules (TASKRUN_SCHEDULES_TABLE).")
    idempotency_table: str = Field(default="", description="Idempotency keys' table (TASKRUN_IDEMPOTENCY_TABLE).")
    schedule_group: str = Field(default="", description="EventBridge Scheduler group (TASKRUN_SCHEDULE_GROUP).")
    schedule_target_arn: str = Field(default="", description="The function schedules invoke (TASKRUN_SCHEDULE_TARGET).")
    scheduler_role_arn: str = Field(default="", description="Role EventBridge Scheduler invokes it with.")
    dead_letter_arn: str = Field(default="", description="Where undeliverable firings go (TASKRUN_DEAD_LETTER_ARN).")
    state_machine_prefix: str = Field(
        default="",
        description="ARN prefix of the flows' state machines; a flow's is the prefix + its id with / as -.",
    )
    flow_function: str = Field(
        default="", description="The code-first flows' function, its alias's ARN (TASKRUN_FLOW_FUNCTION)."
    )
    wake_state_machine: str = Field(
        default="", description="ARN of the state machine queued runs wait in (TASKRUN_WAKE_STATE_MACHINE)."
    )
    secrets_dir: Path | None = Field(
        default=None, description="Local mode: where tasks' secrets are kept (TASKRUN_SECRETS_DIR)."
    )
    secrets_prefix: str = Field(
        default="", description="SSM parameter path of tasks' secrets, `/<stack>/secrets/` (TASKRUN_SECRETS_PREFIX)."
    )
    task_dirs: list[Path] = Field(default_factory=list, description="Directories of task modules.")
    max_wait_seconds: float = Field(
        default=25.0,
        gt=0,
        description="Longest a request waits for a run; below the 29 s API Gateway integration timeout.",
    )
    compat_wait_seconds: float = Field(default=25.0, gt=0)
    max_schedules: int = Field(
        default=1000,
        ge=1,
        le=1_000_000,
        description="Most schedules the stack holds (TASKRUN_MAX_SCHEDULES); one more is refused with 422.",
    )
    key_cache_seconds: float = Field(
        default=60.0,
        ge=0,
        le=3600,
        description="How long the authorizer keeps a valid key (TASKRUN_KEY_CACHE_SECONDS).",
    )
    usage_plan: str = Field(default="", description="The keys' usage plan, by name (TASKRUN_USAGE_PLAN).")
    shared_usage_key: str = Field(
        default="", description="Usage-plan key of keys with none of their own (TASKRUN_SHARED_USAGE_KEY)."
    )
    results_bucket: str = Field(
        default="", description="Bucket of results too large for a run (TASKRUN_RESULTS_BUCKET)."
    )
    files_bucket: str = Field(default="", description="Bucket of uploaded files (TASKRUN_FILES_BUCKET).")
    cache_table: str = Field(default="", description="The result cache's table (TASKRUN_CACHE_TABLE).")
    limits_table: str = Field(default="", description="Concurrency limits' table (TASKRUN_LIMITS_TABLE).")
    deliveries_table: str = Field(default="", description="Webhook deliveries' table (TASKRUN_DELIVERIES_TABLE).")
    webhook_queue_url: str = Field(default="", description="The queue of webhook attempts (TASKRUN_WEBHOOK_QUEUE_URL).")
    webhook_secret: str = Field(
        default="", description="The whsec_ signing secret itself (TASKRUN_WEBHOOK_SECRET); wins over the ARN."
    )
    webhook_secret_arn: str = Field(
        default="", description="Secrets Manager secret holding the signing secret (TASKRUN_WEBHOOK_SECRET_ARN)."
    )
    webhook_retry_delays: list[float] = Field(
        default_factory=lambda: list(WEBHOOK_DELAYS),
        min_length=0,
        max_length=20,
        description="Seconds between webhook attempts (TASKRUN_WEBHOOK_RETRY_DELAYS, comma-separated).",
    )
    webhook_timeout_seconds: float = Field(
        default=15.0, gt=0, le=30, description="Longest one webhook attempt takes (TASKRUN_WEBHOOK_TIMEOUT_SECONDS)."
    )
    webhook_allow_private: bool = Field(
        default=False,
        description="Let webhooks reach loopback and private addresses (TASKRUN_WEBHOOK_ALLOW_PRIVATE=1).",
    )

    @classmethod
    def from_environ(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "runs_table": env.get("TASKRUN_RUNS_TABLE", ""),
            "keys_table": env.get("TASKRUN_KEYS_TABLE", ""),
            "worker_function": env.get("TASKRUN_WORKER_FUNCTION", ""),
            "callbacks_table": env.get("TASKRUN_CALLBACKS_TABLE", ""),
            "schedules_table": env.get("TASKRUN_SCHEDULES_TABLE", ""),
            "idempotency_table": env.get("TASKRUN_IDEMPOTENCY_TABLE", ""),
            "schedule_group": env.get("TASKRUN_SCHEDULE_GROUP", ""),
            "schedule_target_arn": env.get("TASKRUN_SCHEDULE_TARGET", ""),
            "scheduler_role_arn": env.get("TASKRUN_SCHEDULER_ROLE", ""),
            "dead_letter_arn": env.get("TASKRUN_DEAD_LETTER_ARN", ""),
            "state_machine_prefix": env.get("TASKRUN_STATE_MACHINE_PREFIX", ""),
            "wake_state_machine": env.get("TASKRUN_WAKE_STATE_MACHINE", ""),
            "flow_function": env.get("TASKRUN_FLOW_FUNCTION", ""),
            "secrets_dir": Path(env["TASKRUN_SECRETS_DIR"]) if env.get("TASKRUN_SECRETS_DIR") else None,
            "secrets_prefix": env.get("TASKRUN_SECRETS_PREFIX", ""),
            "task_dirs": [Path(p) for p in env.get("TASKRUN_TASK_DIRS", "").split(os.pathsep) if p],
            "usage_plan": env.get("TASKRUN_USAGE_PLAN", ""),
            "shared_usage_key": env.get("TASKRUN_SHARED_USAGE_KEY", ""),
            "results_bucket": env.get("TASKRUN_RESULTS_BUCKET", ""),
            "files_bucket": env.get("TASKRUN_FILES_BUCKET", ""),
            "cache_table": env.get("TASKRUN_CACHE_TABLE", ""),
            "limits_table": env.get("TASKRUN_LIMITS_TABLE", ""),
            "deliveries_table": env.get("TASKRUN_DELIVERIES_TABLE", ""),
            "webhook_queue_url": env.get("TASKRUN_WEBHOOK_QUEUE_URL", ""),
            "webhook_secret": env.get("TASKRUN_WEBHOOK_SECRET", ""),
            "webhook_secret_arn": env.get("TASKRUN_WEBHOOK_SECRET_ARN", ""),
            "webhook_allow_private": env.get("TASKRUN_WEBHOOK_ALLOW_PRIVATE", "") in ("1", "true", "yes"),
        }
        if env.get("TASKRUN_WEBHOOK_RETRY_DELAYS"):
            values["webhook_retry_delays"] = [part for part in env["TASKRUN_WEBHOOK_RETRY_DELAYS"].split(",") if part]
        for name in (
            "max_wait_seconds",
            "compat_wait_seconds",
            "key_cache_seconds",
            "webhook_timeout_seconds",
            "max_schedules",
        ):
            key = "TASKRUN_" + name.upper()
            if env.get(key):
                values[name] = env[key]
        return cls.model_validate(values)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_environ()
