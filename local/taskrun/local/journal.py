"""Durable tables for local mode: every DynamoDB write is appended to a journal file before
the write answers, and the journal is replayed into the emulator's tables at start.

A line holds one item as it stands after a write (DynamoDB's JSON form), or its key with
no item after a delete. Appends go straight to the operating system, so a write that was
answered survives the stack being killed; at start the journal is folded into one line
per item (written aside, then renamed over), so it grows only with the items kept. The
journal holds every run's arguments and results: it and its folder are owner only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from taskrun.local.resources import ACCOUNT_ID
from taskrun.private import open_private, private_folder

JOURNAL_NAME = "tables.jsonl"


def _key_of(table: str, item: Any) -> str:
    """One string per item of a table, from moto's Item."""
    range_key = item.range_key.to_json() if item.range_key is not None else None
    return json.dumps([table, item.hash_key.to_json(), range_key], sort_keys=True)


class Journal:
    """The append-only record of a stack's table items, in one directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / JOURNAL_NAME
        self._file: IO[bytes] | None = None

    def _lines(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open("rb") as stream:
            for raw in stream:
                try:
                    yield json.loads(raw)
                except ValueError:
                    return  # a line cut short by a kill: everything before it was answered and stands

    def load(self) -> dict[str, dict[str, Any]]:
        """The items as they last stood: table → item key → item (DynamoDB JSON)."""
        items: dict[str, dict[str, Any]] = {}
        for line in self._lines():
            table = items.setdefault(line["table"], {})
            if line["item"] is None:
                table.pop(line["key"], None)
            else:
                table[line["key"]] = line["item"]
        return items

    def open(self, items: dict[str, dict[str, Any]]) -> None:
        """Rewrite the journal as one line per item, then take appends."""
        private_folder(self.directory)
        aside = self.path.with_suffix(".compacting")
        with open_private(aside) as stream:
            for table, by_key in items.items():
                for key, item in by_key.items():
                    stream.write(_line(table, key, item))
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(aside, self.path)
        self._file = open_private(self.path, append=True, buffering=0)

    def written(self, table: str, item: Any) -> None:
        """Record an item as it now stands (moto's Item)."""
        if self._file is not None:
            self._file.write(_line(table, _key_of(table, item), item.to_json()["Attributes"]))

    def deleted(self, table: str, item: Any) -> None:
        if self._file is not None:
            self._file.write(_line(table, _key_of(table, item), None))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _line(table: str, key: str, item: dict[str, Any] | None) -> bytes:
    return (json.dumps({"table": table, "key": key, "item": item}, separators=(",", ":")) + "\n").encode()


def restore_tables(journal: Journal, region: str) -> int:
    """Put the journal's items back into the emulator's tables; return how many. The journal
    is then rewritten as one line per item and takes every write from now on."""
    from moto.dynamodb.models import dynamodb_backends

    from taskrun.models import ACTIVE_STATUSES
    from taskrun.runs.items import time_shard

    backend = dynamodb_backends[ACCOUNT_ID][region]
    items = journal.load()
    for table, by_key in items.items():
        if table not in backend.tables:
            continue
        for item in by_key.values():
            if item.get("kind") == {"S": "run"} and "run_id" in item:  # kept before `by_time` had shards
                item["kind"] = {"S": time_shard(item["run_id"]["S"])}
            is_run = item.get("kind", {}).get("S", "").startswith("run#")
            if is_run and "active" not in item and item["status"]["S"] in ACTIVE_STATUSES:
                item["active"] = item["kind"]  # kept before the `active` index, or short (it outlives its request now)
            backend.put_item(table, item)
    journal.open(items)
    return sum(len(by_key) for by_key in items.values())
