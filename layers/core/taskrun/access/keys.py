"""API keys: made once, shown once, stored only as a SHA-256 hash, checked by the authorizer.

A key carries scopes (what it may do) and task patterns (which tasks it may do it to). Its
text is `trk_` + 30 random characters + a 6-character checksum of them, so that secret
scanners recognise a leaked key and the authorizer refuses a mistyped one without a read.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pydantic import ConfigDict, Field, field_validator

from taskrun import aws
from taskrun.access.scopes import (
    ALL_SCOPES,
    DEFAULT_SCOPES,
    LEGACY_SCOPES,
    MAX_TASK_PATTERNS,
    Caller,
    Scope,
    TaskAccess,
    TaskPattern,
)
from taskrun.errors import Forbidden, KeyNotFound, Unauthorized
from taskrun.modelbase import Model
from taskrun.models import UtcTime, utcnow

KEY_PREFIX = "trk_"
BASE62 = string.digits + string.ascii_letters
RANDOM_LENGTH = 30
CHECKSUM_LENGTH = 6
KEY_LENGTH = len(KEY_PREFIX) + RANDOM_LENGTH + CHECKSUM_LENGTH


def _current_scopes(scopes: list[str]) -> list[str]:
    current: list[str] = []
    for scope in scopes:
        for named in LEGACY_SCOPES.get(scope, [scope]):  # type: ignore[list-item]
            if named not in current:
                current.append(named)
    return current


class ApiKey(Model):
    key_id: str
    key_hash: str
    name: str = ""
    scopes: list[str] = Field(default_factory=lambda: [str(scope) for scope in ALL_SCOPES])
    tasks: list[str] = Field(default_factory=list)
    created_at: UtcTime = Field(default_factory=utcnow)
    revoked: bool = False
    usage_key_id: str | None = (
        None  # its API Gateway key in the usage plan (taskrun.access.usage); None: the shared one
    )

    @field_validator("scopes")
    @classmethod
    def _current(cls, scopes: list[str]) -> list[str]:
        """A key stored with the scopes of an earlier version reads as their current names."""
        return _current_scopes(scopes)


class KeyView(Model):
    """A key as the API shows it: never its secret or hash."""

    key_id: str
    name: str
    scopes: list[str]
    tasks: list[str] = Field(description="Task patterns the key is limited to; empty: every task")
    created_at: UtcTime
    revoked: bool


class KeyList(Model):
    keys: list[KeyView]


class NewKeyRequest(Model):
    """Body of POST /v1/keys."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", max_length=200)
    scopes: list[Scope] = Field(
        default_factory=lambda: list(DEFAULT_SCOPES),
        min_length=1,
        max_length=len(ALL_SCOPES),
        description="What the key may do; by default everything but managing keys (admin)",
    )
    tasks: list[TaskPattern] = Field(
        default_factory=list,
        max_length=MAX_TASK_PATTERNS,
        description="Task ids or prefixes ending in `*` (`reports/*`) the key may run and see; empty: every task",
    )


class NewKey(KeyView):
    key: str = Field(description="The key itself: shown only in this answer, stored only as a hash.")


def view_of(record: ApiKey) -> KeyView:
    return KeyView.model_validate(record.model_dump(exclude={"key_hash", "usage_key_id"}))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _checksum(text: str) -> str:
    value = zlib.crc32(text.encode())
    digits = []
    for _ in range(CHECKSUM_LENGTH):
        value, digit = divmod(value, len(BASE62))
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def make_secret() -> str:
    random_part = "".join(secrets.choice(BASE62) for _ in range(RANDOM_LENGTH))
    return KEY_PREFIX + random_part + _checksum(random_part)


def looks_forged(key: str) -> bool:
    """A key in taskrun's own shape whose checksum does not hold: mistyped or made up."""
    if not key.startswith(KEY_PREFIX) or len(key) != KEY_LENGTH:
        return False
    body = key[len(KEY_PREFIX) :]
    return _checksum(body[:RANDOM_LENGTH]) != body[RANDOM_LENGTH:]


def new_key(
    name: str = "", scopes: list[str] | None = None, secret: str | None = None, tasks: list[str] | None = None
) -> tuple[str, ApiKey]:
    """A new key: the secret (shown once) and the record to store."""
    secret = secret or make_secret()
    record = ApiKey(
        key_id="key_" + hash_key(secret)[:16],
        key_hash=hash_key(secret),
        name=name,
        scopes=list(ALL_SCOPES) if scopes is None else scopes,
        tasks=tasks or [],
    )
    return secret, record


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key from `X-API-KEY: <key>` or `Authorization: Bearer <key>` (header names in any case)."""
    lowered = {name.lower(): value for name, value in headers.items()}
    if lowered.get("x-api-key"):
        return lowered["x-api-key"].strip()
    return _bearer(lowered.get("authorization", ""))


def _bearer(value: str) -> str | None:
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def ambiguous_credentials(multi_headers: Mapping[str, list[str]]) -> tuple[str, list[str]] | None:
    """Why a request's credentials are ambiguous, with every key it presents; None when it
    presents at most one. Two X-API-KEY headers, two Authorization headers, or both headers
    naming different keys are refused: never "the last one wins"."""
    given: dict[str, list[str]] = {"x-api-key": [], "authorization": []}
    for name, values in multi_headers.items():
        if name.lower() in given:
            given[name.lower()] += [str(value) for value in values]
    keys = [value.strip() for value in given["x-api-key"] if value.strip()]
    keys += [token for value in given["authorization"] if (token := _bearer(value))]
    for name, shown in (("x-api-key", "X-API-KEY"), ("authorization", "Authorization")):
        if len(given[name]) > 1:
            return f"the request has {len(given[name])} {shown} headers; send one key, once", keys
    if len(set(keys)) > 1:
        return "X-API-KEY and Authorization name different keys; send one key, once", keys
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

    def by_id(self, key_id: str) -> ApiKey:
        found = next((key for key in self.all() if key.key_id == key_id), None)
        if found is None:
            raise KeyNotFound(key_id)
        return found

    def revoke(self, found: ApiKey) -> ApiKey:
        """Revoke a key: the authorizer refuses it once its kept copy is older than
        `key_cache_seconds` (at once where it has none)."""
        self.table.update_item(
            Key={"key_hash": found.key_hash},
            UpdateExpression="SET revoked = :yes",
            ConditionExpression="attribute_exists(key_hash)",
            ExpressionAttributeValues={":yes": True},
        )
        return found.model_copy(update={"revoked": True})


def beyond(manager: Caller, scopes: list[str], tasks: list[str]) -> str | None:
    """What a key of these scopes and tasks holds that the managing key does not, in words;
    None when it lies within the manager's own. A key gives no more than it has."""
    exceeding = []
    if extra := [scope for scope in scopes if scope not in manager.scopes]:
        held = " ".join(sorted(manager.scopes)) or "none"
        exceeding.append(f"the scopes {' '.join(extra)} (this key holds {held})")
    if extra := manager.tasks.beyond(TaskAccess.of(tasks)):
        named = "every task" if extra == ["*"] else "the tasks " + " ".join(extra)
        exceeding.append(f"{named} (this key is limited to {' '.join(manager.tasks.patterns)})")
    return " and ".join(exceeding) or None


def refuse_beyond(manager: Caller, scopes: list[str], tasks: list[str], doing: str) -> None:
    """Forbidden, naming what exceeds, unless a key of these scopes and tasks lies within the manager's."""
    if exceeding := beyond(manager, scopes, tasks):
        raise Forbidden(f"this key cannot {doing} a key beyond its own: it would give {exceeding}")


def keys_within(manager: Caller, keys: DynamoKeyStore) -> list[ApiKey]:
    """The keys a managing key sees: those within its own scopes and tasks."""
    return [key for key in keys.all() if beyond(manager, key.scopes, key.tasks) is None]


def revoke_within(manager: Caller, keys: DynamoKeyStore, key_id: str) -> ApiKey:
    """Revoke a key that lies within the managing key's own (Forbidden otherwise)."""
    found = keys.by_id(key_id)
    refuse_beyond(manager, found.scopes, found.tasks, "revoke")
    return keys.revoke(found)


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
    if looks_forged(key):
        raise Unauthorized("the API key is not valid (its checksum does not match)")
    digest = hash_key(key)
    record = keys.find(digest)
    if record is None or record.revoked or not hmac.compare_digest(record.key_hash, digest):
        raise Unauthorized("the API key is not valid")
    return record
