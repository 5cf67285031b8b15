"""Step Functions in local mode: where moto's interpreter falls short of AWS in what the
flows rely on, mended (task tokens' limits and causes, waits until a timestamp, Lambda steps'
invocation type, each state calling AWS as the state machine's role). Each mend returns its undo."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from unittest import mock

from taskrun.flows.stepfunctions import MAX_TASK_CAUSE, MAX_TASK_ERROR, MAX_TASK_OUTPUT
from taskrun.local.iam import Judge, access_key_of
from taskrun.local.patches import mend

PARSED_PATHS_KEPT = 4096  # JSONPath texts, each parsed once


def task_tokens_as_step_functions() -> Callable[[], None]:
    """SendTaskSuccess and SendTaskFailure as Step Functions answers them: over its length
    limits (output 262,144, cause 32,768, error 256) a call is refused; moto takes any
    size. moto also drops `cause` on SendTaskFailure; Step Functions keeps it. Return the undo."""
    from moto.core.responses import ActionResult, EmptyResult
    from moto.stepfunctions.exceptions import ValidationException
    from moto.stepfunctions.responses import StepFunctionResponse

    original_success = StepFunctionResponse.send_task_success

    def check(name: str, value: str | None, limit: int) -> None:
        if value is not None and len(value) > limit:
            raise ValidationException(
                f"1 validation error detected: Value at '{name}' failed to satisfy constraint: "
                f"Member must have length less than or equal to {limit}"
            )

    def send_task_success(self: StepFunctionResponse) -> ActionResult:
        check("output", self._get_param("output"), MAX_TASK_OUTPUT)
        return original_success(self)

    def send_task_failure(self: StepFunctionResponse) -> ActionResult:
        check("error", self._get_param("error"), MAX_TASK_ERROR)
        check("cause", self._get_param("cause"), MAX_TASK_CAUSE)
        self.stepfunction_backend.send_task_failure(  # the executing backend takes a cause
            self._get_param("taskToken"),
            error=self._get_param("error"),
            cause=self._get_param("cause"),  # type: ignore[call-arg]
        )
        return EmptyResult()

    return mend(StepFunctionResponse, send_task_success=send_task_success, send_task_failure=send_task_failure)


def waits_until_their_timestamp() -> Callable[[], None]:
    """A Wait state's Timestamp as Step Functions keeps it: left at that moment. moto drops the
    fraction of a second, waits whole seconds and compares with the machine's local time, so a
    wait could end up to a second early (or hours off outside UTC). Return the undo."""
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import FailureEventException
    from moto.stepfunctions.parser.asl.component.state.wait.wait_function.timestamp import Timestamp

    def _get_wait_seconds(self: Timestamp, env: Any) -> float:
        self.string.eval(env=env)
        text: str = env.stack.pop()
        if self._from_timestamp_string(timestamp=text) is None:
            raise FailureEventException(self._create_failure_event(env, text))
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return max(0.0, (moment - datetime.now(UTC)).total_seconds())

    def _wait_interval(self: Timestamp, env: Any, wait_seconds: float) -> None:
        deadline = time.monotonic() + wait_seconds
        # woken early by a stop (the execution is no longer running) or by nothing: wait on
        while env.is_running() and (left := deadline - time.monotonic()) > 0:
            env.program_state_event.wait(left)

    return mend(Timestamp, _get_wait_seconds=_get_wait_seconds, _wait_interval=_wait_interval)


def lambda_steps_take_an_invocation_type() -> Callable[[], None]:
    """A lambda:invoke Task state may name its InvocationType (`Event`: hand the payload over
    and go on), as Step Functions documents; moto's interpreter drops the parameter, so every
    step would wait for the function. Return the undo."""
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import state_task_service_lambda

    bindings = state_task_service_lambda._SUPPORTED_API_PARAM_BINDINGS
    patcher = mock.patch.dict(bindings, {"invoke": {*bindings["invoke"], "InvocationType"}})
    patcher.start()
    return patcher.stop


def jsonpaths_parsed_once() -> Callable[[], None]:
    """moto's ASL interpreter parses a state's JSONPath (`$.order`) each time the state runs,
    building jsonpath_ng's parser anew (milliseconds of CPU a path); a parsed path is only
    read after that, so one is kept per path text. Return the undo."""
    from jsonpath_ng import parse
    from jsonpath_ng.ext import parse as parse_extended
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    undone = [
        mend(json_path, parse=functools.lru_cache(maxsize=PARSED_PATHS_KEPT)(parse_extended)),
        mend(result_path, parse=functools.lru_cache(maxsize=PARSED_PATHS_KEPT)(parse)),
    ]

    def undo() -> None:
        for step in reversed(undone):
            step()

    return undo


def states_call_as_their_role(judge: Judge) -> Callable[[], None]:
    """moto's ASL interpreter makes a Task state's AWS calls with credentials of no one;
    here they carry the execution's role (as Step Functions assumes it), so that a role of
    the template is judged as the stack's functions are. (The client is made as moto's own
    `boto_client_for` makes it, with the role's access key.)"""
    import importlib
    import pkgutil

    from botocore.config import Config
    from moto.core.models import botocore_stubber
    from moto.settings import moto_server_port
    from moto.stepfunctions.parser.asl.component.common.timeouts.timeout import TimeoutSeconds
    from moto.stepfunctions.parser.asl.component.state import exec as state_exec
    from moto.stepfunctions.parser.asl.utils import boto_client

    from taskrun import aws

    original = boto_client.boto_client_for
    made: dict[tuple[str, str, str, bool, str], Any] = {}
    making = threading.Lock()

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        # One client per region, service and role, kept: moto makes a new one for every Task
        # state (4-6 ms of CPU each, the largest part of a Lambda step here); a client is safe
        # to share between threads, and each holds its own connection pool.
        role = str(getattr(state_credentials, "role_arn", "") or "").rpartition("/")[2]
        key = (region, service, role, botocore_stubber.enabled, moto_server_port())
        with making:
            if key not in made:
                made[key] = (
                    _make(region, service, role)
                    if role in judge.roles
                    else original(region, service, state_credentials)
                )
            return made[key]

    def _make(region: str, service: str, role: str) -> Any:
        endpoint = {} if botocore_stubber.enabled else {"endpoint_url": f"http://localhost:{moto_server_port()}"}
        return aws.new_client(
            service,
            region_name=region,
            aws_access_key_id=access_key_of(role),
            aws_secret_access_key="local",
            config=Config(
                parameter_validation=False,
                retries={"max_attempts": 0, "total_max_attempts": 1},
                connect_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                read_timeout=TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS,
                max_pool_connections=64,  # shared by every execution's steps at once
            ),
            **endpoint,
        )

    users = [boto_client]
    for found in pkgutil.walk_packages(state_exec.__path__, state_exec.__name__ + "."):
        module = importlib.import_module(found.name)
        if getattr(module, "boto_client_for", None) is original:
            users.append(module)
    for module in users:
        module.boto_client_for = boto_client_for  # type: ignore[attr-defined]

    def undo() -> None:
        for module in users:
            module.boto_client_for = original  # type: ignore[attr-defined]

    return undo
