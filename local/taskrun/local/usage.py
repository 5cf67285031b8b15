"""API Gateway's usage plans in local mode: kept by the emulator, applied by the gateway.

The keys function makes each key's usage-plan key over the API Gateway API, as on AWS; the
gateway then reads, for the usage identifier an authorizer names, its plan's throttle from
the emulator's own state (API Gateway's data plane reads its control plane the same way).
The emulator keeps no API Gateway state across restarts, so a start makes again the
usage-plan keys that the kept keys table names, with the ids it names.
"""

from __future__ import annotations

import math
from typing import Any

from taskrun.access.keys import DynamoKeyStore
from taskrun.access.usage import UsagePlan, usage_value
from taskrun.local.resources import ACCOUNT_ID


def with_id(identifier: Any, custom_id: str) -> None:
    """The next API Gateway resource made with this identifier's name gets `custom_id`."""
    from moto.utilities.id_generator import moto_id_manager

    moto_id_manager.set_custom_id(identifier, custom_id)


def limits_of(region: str, value: str | None) -> tuple[float, float] | None:
    """(rate, burst) of the usage plan that holds the enabled API key of this value; None
    when there is no such key (API Gateway's 403 for a method that requires one)."""
    from moto.apigateway.models import apigateway_backends

    if not value:
        return None
    backend = apigateway_backends[ACCOUNT_ID][region]
    key = next((key for key in list(backend.keys.values()) if key.value == value), None)
    if key is None or not key.enabled:
        return None
    for plan_id, plan_keys in list(backend.usage_plan_keys.items()):
        plan = backend.usage_plans.get(plan_id)
        if key.id in plan_keys and plan is not None:
            throttle = plan.throttle or {}
            return float(throttle.get("rateLimit", math.inf)), float(throttle.get("burstLimit", math.inf))
    return None


def restore_usage_keys(keys: DynamoKeyStore, plan: UsagePlan, region: str) -> int:
    """Make again the usage-plan key of every valid key that names one, with the id it
    names; return how many."""
    from moto.apigateway.utils import ApigwApiKeyIdentifier

    restored = 0
    for record in keys.all():
        if record.revoked or not record.usage_key_id:
            continue
        with_id(ApigwApiKeyIdentifier(ACCOUNT_ID, region, usage_value(record.key_hash)), record.usage_key_id)
        plan.enrol(record)
        restored += 1
    return restored
