"""Concurrency limits: how many runs of a task (or of a limit several tasks share, or of one
`concurrency_key` of a task) execute at once, and the queue of the runs waiting for room.

Each limit is an item of the limits table: `slot` (its name) and `holders`, a map from the
run ids holding it to when each should have ended. A run takes its slots (its limit's, then
its key's), each with a write conditional on room (`size(holders) < :size`) or on holding
it already, so a repeated take is the same take; one without room gives back the other. A run that finds no room waits
`queued`, its `waiting_for` naming its limit: the runs table's `waiting` index holds the
waiting runs of each limit oldest first, and they are admitted in that order (a run whose
key is full is passed over for younger runs of other keys).

Whatever ends a run (its worker, a cancel, the sweeper, the worker's on-failure destination)
ends it in the runs table, whose stream tells the notifier, which gives its slots back and
admits the next runs (taskrun.runs.notify); so does a run put back in the queue for a retry. A
slot still held past its holder's deadline is given back when its run is found ended (a
lost release).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from taskrun import aws
from taskrun.catalog.context import MAX_TIMEOUT
from taskrun.errors import RunConflict, RunNotFound
from taskrun.models import ErrorType, Run, RunStatus, Slot, utcnow
from taskrun.runs.dispatch import Dispatcher, DispatchFailed
from taskrun.runs.store import Ending, RunStore, end_once
from taskrun.telemetry import count

logger = Logger(child=True)

DEADLINE_SLACK_SECONDS = 900  # a holder's run may wait this long to start (a throttled worker), past its timeout
WAITERS_PER_READ = 25


class LimitStore(aws.TableAdapter):
    """The limits table: one item per limit, `holders` the runs holding a slot of it."""

    def __init__(self, table_name: str, table: Any = None) -> None:
        super().__init__(table_name, table)
        self._known: set[str] = set()  # limits whose item exists

    def take(self, run_id: str, slots: Sequence[Slot], deadline: float) -> int | None:
        """Take a slot of each limit for the run, all or none (one that had no room gives
        back those taken before it); None when taken, else the index of the slot that had
        no room. Each take is conditional on room or on holding it already."""
        taken: list[Slot] = []
        for index, slot in enumerate(slots):
            self._ensure(slot.name)
            try:
                self.table.update_item(
                    Key={"slot": slot.name},
                    UpdateExpression="SET holders.#run = :deadline",
                    ConditionExpression="attribute_exists(holders.#run) OR size(holders) < :size",
                    ExpressionAttributeNames={"#run": run_id},
                    ExpressionAttributeValues={":deadline": int(deadline), ":size": slot.size},
                )
            except ClientError as error:
                if not aws.is_condition_failure(error):
                    raise
                self.give_back(run_id, taken)
                return index
            taken.append(slot)
        return None

    def give_back(self, run_id: str, slots: Sequence[Slot]) -> None:
        """The run's slots, given back (a slot it does not hold is left as it is)."""
        for slot in slots:
            self.table.update_item(
                Key={"slot": slot.name},
                UpdateExpression="REMOVE holders.#run",
                ExpressionAttributeNames={"#run": run_id},
            )

    def overdue(self, name: str, now: float) -> list[str]:
        """The runs holding a slot of the limit past their deadline."""
        item = self.table.get_item(Key={"slot": name}, ConsistentRead=True).get("Item") or {}
        return [run_id for run_id, deadline in (item.get("holders") or {}).items() if float(deadline) < now]

    def _ensure(self, name: str) -> None:
        """The limit's item, made with no holder the first time it is used (once per
        process: an item is never deleted)."""
        if name in self._known:
            return
        try:
            self.table.put_item(Item={"slot": name, "holders": {}}, ConditionExpression="attribute_not_exists(slot)")
        except ClientError as error:
            if not aws.is_condition_failure(error):
                raise
        self._known.add(name)


@dataclass
class Admission:
    """Admits waiting runs to their limits in arrival order, and takes back the slots of
    runs that end."""

    store: RunStore
    limits: LimitStore
    dispatcher: Dispatcher
    clock: Callable[[], datetime] = utcnow

    def admit(self, limit: str) -> list[str]:
        """Start the oldest runs waiting for the limit while it has room; their ids."""
        admitted: list[str] = []
        after: str | None = None
        freed = False
        while True:
            waiting = self.store.waiting(limit, after, WAITERS_PER_READ)
            for waiter in waiting:
                run_id, slots = waiter.run_id, waiter.slots
                after = run_id
                deadline = time.time() + (waiter.timeout or MAX_TIMEOUT) + DEADLINE_SLACK_SECONDS
                full = self.limits.take(run_id, slots, deadline)
                if full == 0 and not freed:
                    freed = True
                    if self._free_overdue(limit):
                        full = self.limits.take(run_id, slots, deadline)
                if full == 0:
                    return admitted  # the limit itself is full: the next release admits on
                if full is not None:
                    continue  # its key is full: younger runs of other keys may go first
                if self._start(run_id, limit, slots):
                    admitted.append(run_id)
            if len(waiting) < WAITERS_PER_READ:
                return admitted

    def give_back(self, run: Run) -> None:
        """A run's slots, given back: it ended, or waits for a retry."""
        self.limits.give_back(run.run_id, run.slots)

    def _start(self, run_id: str, limit: str, slots: Sequence[Slot]) -> bool:
        """Move a run that took its slots from waiting to pending, and hand it to the worker.
        A run no longer waiting (cancelled, expired, admitted by another) gives back what it
        took unless it is the one running with it."""
        try:
            run = self.store.admit(run_id, limit, self.clock())
        except (RunConflict, RunNotFound):
            self._keep_or_give_back(run_id, slots)
            return False
        try:
            self.dispatcher.dispatch(run)
        except DispatchFailed as error:
            logger.exception("an admitted run could not be handed over", extra={"run_id": run_id})
            end_once(self.store, run_id, Ending.failed(self.clock(), ErrorType.DISPATCH_ERROR, str(error)))
            self.limits.give_back(run_id, slots)
            return False
        logger.info("run admitted to its limit", extra={"run_id": run_id, "limit": limit})
        count("RunsAdmitted")
        return True

    def _keep_or_give_back(self, run_id: str, slots: Sequence[Slot]) -> None:
        try:
            status = self.store.status_of(run_id)
        except RunNotFound:
            status = RunStatus.CANCELLED
        if status not in (RunStatus.PENDING, RunStatus.RUNNING):
            self.limits.give_back(run_id, slots)

    def _free_overdue(self, limit: str) -> bool:
        """Give back the slots held past their deadline by runs that are no longer active
        (a release that was lost); whether any was."""
        freed = False
        for run_id in self.limits.overdue(limit, time.time()):
            try:
                status = self.store.status_of(run_id)
            except RunNotFound:
                status = None
            if status is None or status.is_done or status is RunStatus.QUEUED:
                self.limits.give_back(run_id, [Slot(name=limit, size=0)])
                freed = True
        if freed:
            logger.warning("slots held past their deadline given back", extra={"limit": limit})
            count("SlotsFreed")
        return freed
