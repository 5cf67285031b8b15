"""A task as the catalog shows it: its parameters and output as JSON Schemas, its revisions."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from taskrun.ids import TaskId
from taskrun.modelbase import Model
from taskrun.models import RetryPolicy, TaskType


class RevisionInfo(Model):
    revision: str
    weight: int


class TaskInfo(Model):
    task_id: TaskId
    task_type: TaskType
    description: str
    parameters: dict[str, Any]
    output: dict[str, Any]
    timeout: int | None
    cache_ttl: int | None = Field(default=None, description="Seconds a result answers identical runs, if cached.")
    retry: RetryPolicy | None = Field(default=None, description="How a failed run is tried again, if it is.")
    concurrency: int | None = Field(default=None, description="At most this many runs execute at once.")
    concurrency_limit: str | None = Field(default=None, description="The named limit it shares, if any.")
    per_key: int | None = Field(default=None, description="At most this many runs of one concurrency_key at once.")
    revisions: list[RevisionInfo]
    problem: str | None = Field(
        default=None,
        description="Local mode: why the task's module does not import as it stands (file, line, error); "
        "the task is shown as it last imported and refuses runs until its module imports.",
    )


class ModuleProblemInfo(Model):
    module: str
    file: str = Field(description="The module's file, under its tasks directory's name.")
    line: int | None
    error: str = Field(description="The exception's type and message.")


class TaskList(Model):
    tasks: list[TaskInfo]
    next_cursor: str | None = None
    unloaded_modules: list[ModuleProblemInfo] = Field(
        default_factory=list,
        description="Local mode: task modules that did not import, whose tasks are not known "
        "(shown to a key that sees every task).",
    )
