"""Idempotency keys: a retried POST with the same `Idempotency-Key` and body answers the
run the first one started, for 24 hours, instead of starting another.

One record per key (scoped to the API key that sent it), made with a conditional write
that names the run before the run is recorded: of concurrent requests with one key, one
makes the record and its run; the others find the record and answer that run.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from taskrun import aws
from taskrun.errors import FieldError, IdempotencyConflict, InvalidInput

KEEP = timedelta(hours=24)
HEADER = "Idempotency-Key"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces


@dataclass(frozen=True)
class OnceKey:
    """A request's idempotency key, scoped to its API key, and what its body was."""

    digest: str
    body_digest: str

    @classmethod
    def of(cls, key: str, scope: str, body: Any) -> OnceKey:
        if not _KEY.fullmatch(key):
            raise InvalidInput(
                "the Idempotency-Key header is not valid",
                [FieldError("header.Idempotency-Key", "1 to 255 printable ASCII characters, no spaces", key[:300])],
            )
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return cls(
            digest=hashlib.sha256(f"{scope}\0{key}".encode()).hexdigest(),
            body_digest=hashlib.sha256(canonical.encode()).hexdigest(),
        )

    def item(self, index: int) -> OnceKey:
        """The key of request `index` of a batch sent under this key: each request has a
        record of its own, holding the whole batch's body digest."""
        return OnceKey(hashlib.sha256(f"{self.digest}\0{index}".encode()).hexdigest(), self.body_digest)


class IdempotencyStore(aws.TableAdapter):
    """Records in DynamoDB: key `key_digest`, `expires_at` (epoch seconds, the table's TTL)."""

    def claim(self, once: OnceKey, run_id: str, now: datetime) -> str | None:
        """Make the key's record naming `run_id`; None if this call made it, else the run id
        its first request named (IdempotencyConflict if that request had another body)."""
        try:
            self.table.put_item(
                Item={
                    "key_digest": once.digest,
                    "body_digest": once.body_digest,
                    "run_id": run_id,
                    "expires_at": int((now + KEEP).timestamp()),
                },
                # DynamoDB's TTL deletes expired items late: an expired record counts as none
                ConditionExpression="attribute_not_exists(key_digest) OR expires_at < :now",
                ExpressionAttributeValues={":now": int(now.timestamp())},
            )
            return None
        except ClientError as error:
            if not aws.is_condition_failure(error):
                raise
        item = self.table.get_item(Key={"key_digest": once.digest}, ConsistentRead=True)["Item"]
        if item["body_digest"] != once.body_digest:
            raise IdempotencyConflict()
        return str(item["run_id"])
