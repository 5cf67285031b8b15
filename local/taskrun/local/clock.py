"""EventBridge Scheduler, stood in for locally: moto keeps schedules but never fires them.

Twice a second the clock reads the schedules table (the API's schedules) and the
template's declared schedules, and invokes the schedule target asynchronously with the
event EventBridge Scheduler would send for each firing that is due. A one-off missed while
the stack was stopped fires once at the next start; a recurring schedule resumes at its
next time (missed firings are not made up, as EventBridge Scheduler does not).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from taskrun.local.lambdas import LambdaRuntime
from taskrun.local.resources import DeclaredSchedule
from taskrun.local.ticker import Ticker
from taskrun.models import format_time, utcnow
from taskrun.schedules.expressions import Expression, parse_expression
from taskrun.schedules.models import Schedule
from taskrun.schedules.service import rate_anchor
from taskrun.schedules.store import ScheduleStore

TICK_SECONDS = 0.5


@dataclass
class _Plan:
    signature: tuple[Any, ...]  # what the next time was worked out from
    due: datetime | None


class ScheduleClock:
    def __init__(
        self,
        runtime: LambdaRuntime,
        target_function: str,
        store: ScheduleStore,
        declared: list[DeclaredSchedule],
    ) -> None:
        self.runtime = runtime
        self.target_function = target_function
        self.store = store
        self.declared = [schedule for schedule in declared if schedule.enabled]
        self._plans: dict[str, _Plan] = {}
        self._started = utcnow()
        self._ticker = Ticker(TICK_SECONDS, self.tick, name="schedule-clock")

    def start(self) -> None:
        self._ticker.start()

    def stop(self) -> None:
        self._ticker.stop()

    def tick(self) -> None:
        now = utcnow()
        seen: set[str] = set()
        for schedule in self._api_schedules():
            seen.add(schedule.schedule_id)
            if schedule.enabled:
                self._consider_api(schedule, now)
        for declared in self.declared:
            seen.add("declared:" + declared.name)
            self._consider_declared(declared, now)
        for gone in set(self._plans) - seen:
            del self._plans[gone]

    def _api_schedules(self) -> list[Schedule]:
        found: list[Schedule] = []
        cursor = None
        while True:
            page, cursor = self.store.list(None, 100, cursor)
            found += page
            if cursor is None:
                return found

    def _consider_api(self, schedule: Schedule, now: datetime) -> None:
        expression = parse_expression(schedule.expression, schedule.timezone)
        if expression.one_off:
            assert expression.at is not None
            once: tuple[Any, ...] = (schedule.expression, schedule.timezone, schedule.updated_at)
            plan = self._plans.get(schedule.schedule_id)
            if schedule.fired_at is None and expression.at <= now and (plan is None or plan.signature != once):
                self._plans[schedule.schedule_id] = _Plan(once, None)  # fired once, whatever the target does
                self._fire({"schedule_id": schedule.schedule_id}, expression.at)
            return
        signature = (schedule.expression, schedule.timezone, schedule.start_at, schedule.updated_at)
        anchor = rate_anchor(schedule, expression)
        self._step(schedule.schedule_id, signature, expression, anchor, now, {"schedule_id": schedule.schedule_id})

    def _consider_declared(self, declared: DeclaredSchedule, now: datetime) -> None:
        expression = parse_expression(declared.expression, declared.timezone)
        anchor = self._started + (expression.period or timedelta(0))
        self._step("declared:" + declared.name, (declared.expression,), expression, anchor, now, declared.input)

    def _step(
        self,
        key: str,
        signature: tuple[Any, ...],
        expression: Expression,
        anchor: datetime,
        now: datetime,
        event: dict[str, Any],
    ) -> None:
        plan = self._plans.get(key)
        if plan is None or plan.signature != signature:
            # first seen (or changed): from now on, so firings missed while stopped are not made up
            plan = self._plans[key] = _Plan(signature, expression.next_after(now, anchor))
        if plan.due is None or plan.due > now:
            return
        self._fire(event, plan.due)
        following = expression.next_after(plan.due, anchor)
        if following is not None and following <= now:  # fell behind: go on from now
            following = expression.next_after(now, anchor)
        plan.due = following

    def _fire(self, event: dict[str, Any], moment: datetime) -> None:
        firing = {
            **{k: v for k, v in event.items() if k != "scheduled_time"},
            "scheduled_time": format_time(moment).replace(".000Z", "Z"),
            "execution_id": str(uuid.uuid4()),
            "attempt": "1",
        }
        self.runtime.invoke_async(self.target_function, firing)
