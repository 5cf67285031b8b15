"""API keys: made once, shown once, stored only as a SHA-256 hash, checked by the authorizer."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

from boto3.dynamodb.conditions import Attr
from pydantic import BaseModel, ConfigDict, Field

from taskrun import aws
from taskrun.errors import KeyNotFound, Unauthorized
from taskrun.models import UtcTime, utcnow

KEY_PREFIX = "trk_"
ALL_SCOPES = ["runs", "admin"]


class ApiKey(BaseModel):
    key_id: str
    key_hash: str
    name: str = ""
    scopes: list[str] = Field(default_factory=lambda: list(ALL_SCOPES))
    created_at: UtcTime = Field(default_factory=utcnow)
    revoked: bool = False


Scope = Literal["runs", "admin"]


class KeyView(BaseModel):
    """A key as the API shows it: never its secret or hash."""

    key_id: str
    name: str
    scopes: list[str]
    created_at: UtcTime
    revoked: bool


class KeyList(BaseModel):
    keys: list[KeyView]


class NewKeyRequest(BaseModel):
    """Body of POST /v1/keys."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    scopes: list[Scope] = Field(default=["runs"], min_length=1, max_length=2, description="runs, admin (keys), or both")


class NewKey(KeyView):
    key: str = Field(description="The key itself: shown only in this answer, stored only as a hash.")


def view_of(record: ApiKey) -> KeyView:
    return KeyView.model_validate(record.model_dump(exclude={"key_hash"}))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key(name: str = "", scopes: list[str] | None = None, secret: str | None = None) -> tuple[str, ApiKey]:
    """A new key: the secret (shown once) and the record to store."""
    secret = secret or KEY_PREFIX + secrets.token_urlsafe(32)
    record = ApiKey(
        key_id="key_" + hash_key(secret)[:16],
        key_hash=hash_key(secret),
        name=name,
        scopes=list(ALL_SCOPES) if scopes is None else scopes,
    )
    return secret, record


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from `X-API-KEY: <key>` or `Authorization: Bearer <key>` (header names in any case)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if lowered.get("x-api-key"):
        return lowered["x-api-key"].strip()
    scheme, _, token = lowered.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


class KeyFinder(Protocol):
    def find(self, key_hash: str) -> ApiKey | None: ...


class KeyStore(KeyFinder, Protocol):
    def put(self, key: ApiKey) -> None: ...


class DynamoKeyStore(aws.TableAdapter):
    def find(self, key_hash: str) -> ApiKey | None:
        item = self.table.get_item(Key={"key_hash": key_hash}).get("Item")
        return ApiKey.model_validate(item) if item else None

    def put(self, key: ApiKey) -> None:
        self.table.put_item(Item=key.model_dump(mode="json"))

    def all(self) -> list[ApiKey]:
        """Every key, oldest first (a stack holds a handful: one scan)."""
        found: list[ApiKey] = []
        scan: dict[str, Any] = {"ConsistentRead": True}
        while True:
            page = self.table.scan(**scan)
            found += [ApiKey.model_validate(item) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return sorted(found, key=lambda key: key.created_at)
            scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key: the authorizer refuses it once its kept copy is older than
        `key_cache_seconds` (at once where it has none)."""
        found = next((key for key in self.all() if key.key_id == key_id), None)
        if found is None:
            raise KeyNotFound(key_id)
        self.table.update_item(
            Key={"key_hash": found.key_hash},
            UpdateExpression="SET revoked = :yes",
            ConditionExpression=Attr("key_hash").exists(),
            ExpressionAttributeValues={":yes": True},
        )
        return found.model_copy(update={"revoked": True})


class CachedKeys:
    """The keys an authorizer found valid, kept for `seconds` so that a key's next requests
    to this instance need no read (API Gateway cannot cache the answers itself while a key
    may come in either of two headers). A revoked key is refused once its entry is that
    old; a key not found, or revoked, is read again every time."""

    MAX_ENTRIES = 1_000

    def __init__(self, keys: KeyStore, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.keys = keys
        self.seconds = seconds
        self.clock = clock
        self._found: dict[str, tuple[ApiKey, float]] = {}

    def find(self, key_hash: str) -> ApiKey | None:
        now = self.clock()
        kept = self._found.get(key_hash)
        if kept is not None and now - kept[1] < self.seconds:
            return kept[0]
        record = self.keys.find(key_hash)
        if record is None or record.revoked or self.seconds <= 0:
            self._found.pop(key_hash, None)
            return record
        if len(self._found) >= self.MAX_ENTRIES:
            self._found.clear()
        self._found[key_hash] = (record, now)
        return record


def authenticate(headers: Mapping[str, str], keys: KeyFinder) -> ApiKey:
    key = presented_key(headers)
    if not key:
        raise Unauthorized("no API key: send X-API-KEY or Authorization: Bearer")
    record = keys.find(hash_key(key))
    if record is None or record.revoked:
        raise Unauthorized("the API key is not valid")
    return record


def authorizer_policy(event: Mapping[str, Any], keys: KeyFinder) -> dict[str, Any]:
    """The answer of a REST API request authorizer: allow the whole API for a valid key.

    A missing or wrong key raises Unauthorized, which the handler turns into API
    Gateway's "Unauthorized" (401). The policy is for every method of the stage, so a
    cached answer serves the key's next calls to any route.
    """
    record = authenticate(event.get("headers") or {}, keys)
    arn_parts = event["methodArn"].split("/")
    stage_arn = "/".join(arn_parts[:2]) + "/*"
    return {
        "principalId": record.key_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": "Allow", "Resource": stage_arn}],
        },
        "context": {"key_id": record.key_id, "scopes": " ".join(record.scopes)},
    }
