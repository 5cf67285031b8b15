"""The result cache: a script registered with `cache_ttl` answers a run identical to one that
succeeded within that many seconds (same task, revision and validated arguments) at once,
with the earlier result. The cached answer is a run of its own, recorded `succeeded` with
`cached: true` and `cached_from`; a request with `"cache": false` runs the task afresh.

CacheTable holds one entry per identical-run key, naming the latest run that succeeded
and when its result stops answering (`expires_at`, also the table's TTL). The worker writes
the entry as it records the run's success, so the next identical request finds it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from taskrun import aws

MAX_CACHE_TTL = 30 * 86400


def cache_key(task_id: str, revision: str, arguments: dict[str, Any]) -> str:
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{task_id}\0{revision}\0{canonical}".encode()).hexdigest()


class ResultCache(aws.TableAdapter):
    """CacheTable: key `cache_key`; `run_id`, `expires_at` (epoch seconds)."""

    def find(self, key: str, now: datetime) -> str | None:
        """The run whose result answers this key now, if any (TTL deletion lags: checked here)."""
        item = self.table.get_item(Key={"cache_key": key}, ConsistentRead=True).get("Item")
        if item is None or int(item["expires_at"]) <= now.timestamp():
            return None
        return str(item["run_id"])

    def remember(self, key: str, run_id: str, expires_at: datetime) -> None:
        self.table.put_item(Item={"cache_key": key, "run_id": run_id, "expires_at": int(expires_at.timestamp())})
