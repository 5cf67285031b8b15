"""Each API key's own throttle: an API Gateway API key in the stack's usage plan.

API Gateway throttles per client only by the API keys of a usage plan. A taskrun key is not
one (it comes in either of two headers and the authorizer checks it), so each gets one
behind it: the authorizer names it as the request's usage identifier (the API's key source
is AUTHORIZER, so clients never send it), and API Gateway holds the key to the plan's rate
and burst. Its value is derived from the taskrun key's hash, so the authorizer needs no
read to name it. A key written straight into the keys table (a new stack's first key) has
none of its own and shares the stack's one shared usage key.
"""

from __future__ import annotations

import hashlib
from typing import Any

from botocore.exceptions import ClientError

from taskrun import aws
from taskrun.access.keys import ApiKey
from taskrun.errors import Unavailable

USAGE_PREFIX = "tru_"


def usage_value(key_hash: str) -> str:
    """The value of a key's usage-plan key: API Gateway's 20 to 128 characters, not the key."""
    return USAGE_PREFIX + hashlib.sha256(f"usage:{key_hash}".encode()).hexdigest()[:40]


def usage_identifier(record: ApiKey, shared: str) -> str | None:
    """What the authorizer names as a request's usage identifier: the key's own usage-plan
    key, else the shared one (None where the stack has neither)."""
    if record.usage_key_id:
        return usage_value(record.key_hash)
    return shared or None


class UsagePlan:
    """The stack's usage plan, found by its name, and the usage-plan keys of taskrun keys."""

    def __init__(self, name: str, client: Any = None) -> None:
        self.name = name
        self.client = client or aws.client("apigateway")
        self._plan_id: str | None = None

    @property
    def plan_id(self) -> str:
        if self._plan_id is None:
            pages = self.client.get_paginator("get_usage_plans").paginate()
            found = [plan["id"] for page in pages for plan in page.get("items", []) if plan.get("name") == self.name]
            if not found:
                raise Unavailable(f"the stack's usage plan {self.name!r} is missing; keys cannot be made")
            self._plan_id = found[0]
        return self._plan_id

    def enrol(self, record: ApiKey) -> ApiKey:
        """Give a key its usage-plan key; the record to store names it. Nothing is left
        behind when API Gateway refuses (its limit of API keys a region, say)."""
        plan_id = self.plan_id  # a missing plan stops it before anything is made
        try:
            made = self.client.create_api_key(
                name=record.key_id,
                description=f"the throttle of taskrun key {record.key_id}",
                enabled=True,
                value=usage_value(record.key_hash),
            )
        except ClientError as error:
            raise Unavailable(f"API Gateway refused the key's usage-plan key: {_reason(error)}") from error
        try:
            self.client.create_usage_plan_key(usagePlanId=plan_id, keyId=made["id"], keyType="API_KEY")
        except ClientError as error:
            self.client.delete_api_key(apiKey=made["id"])
            raise Unavailable(f"API Gateway refused the key's usage-plan key: {_reason(error)}") from error
        return record.model_copy(update={"usage_key_id": made["id"]})

    def withdraw(self, record: ApiKey) -> None:
        """Delete a key's usage-plan key (API Gateway then refuses the key, 403, even where
        an authorizer still holds it); one already gone is fine."""
        if not record.usage_key_id:
            return
        for call, arguments in (
            (self.client.delete_usage_plan_key, {"usagePlanId": self.plan_id, "keyId": record.usage_key_id}),
            (self.client.delete_api_key, {"apiKey": record.usage_key_id}),
        ):
            try:
                call(**arguments)
            except ClientError as error:
                if aws.error_code(error) != "NotFoundException":
                    raise


def _reason(error: ClientError) -> str:
    detail = error.response.get("Error", {})
    return f"{detail.get('Code', 'error')}: {detail.get('Message', '')}".rstrip(": ")
