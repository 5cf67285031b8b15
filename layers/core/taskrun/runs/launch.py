"""Launching a run: a run made from a request, recorded and handed over. A run the task's
cache answers is recorded ended at once, with the earlier run's result; a run of a limited
task waits for room in its limit; a run put off waits, queued, in the wake state machine; a
script whose caller waits long enough runs in the worker while the request waits (a
synchronous invoke); any other run is handed over, a script to the worker (an asynchronous
invoke), a flow to a new execution. A run that cannot be handed over ends dispatch_error.
The run service launches every run it starts so, and waits for it here no more."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aws_lambda_powertools import Logger

from taskrun.catalog.context import DEFAULT_TIMEOUT
from taskrun.errors import RunConflict, RunNotFound
from taskrun.ids import first_run_id_at
from taskrun.models import ErrorType, Run, RunStatus, TaskType, utcnow
from taskrun.runs.cache import ResultCache
from taskrun.runs.concurrency import Admission
from taskrun.runs.dispatch import Dispatcher, DispatchFailed, Waker
from taskrun.runs.store import Ending, RunStore
from taskrun.settings import Settings
from taskrun.telemetry import count

logger = Logger(child=True)

# A waited script run whose timeout fits the wait with this much to spare is run by a
# synchronous invoke of the worker: its end is known the moment it comes, without polling.
SYNC_MARGIN_SECONDS = 3.0
# Such a run whose timeout and margin fit this is short: recorded out of the `active` index
# (taskrun.runs.items), as lists find it by time (taskrun.runs.listing.RECENT_SECONDS), its
# id made within the last FRESH_ID_SECONDS (an idempotent replay may launch an older one).
SHORT_RUN_SECONDS = 30.0
FRESH_ID_SECONDS = 5.0


@dataclass
class Launcher:
    store: RunStore
    dispatcher: Dispatcher
    settings: Settings
    waker: Waker | None = None  # where queued runs wait for their start time
    admission: Admission | None = None  # admits runs of limited tasks to their limits
    cache: ResultCache | None = None
    clock: Callable[[], datetime] = utcnow

    def launch(self, run: Run, wait_timeout: float | None, from_cache: bool = True) -> tuple[Run, float | None]:
        """Record the run and dispatch it; answer the run as it then stands and how long the
        caller is still to wait for it to end (None: not at all). A run the task's cache
        answers (unless the request opted out, or the run is queued) is recorded ended, with
        the earlier run's result; a run that does run refreshes the cache when it succeeds.
        With a wait timeout a script that fits it runs while this call waits, and the rest
        of the wait is answered."""
        cached = self._from_cache(run) if from_cache and run.status is not RunStatus.QUEUED else None
        if cached is not None:
            return cached, None
        sync = wait_timeout is not None and run.status is RunStatus.PENDING and self._runs_within(run, wait_timeout)
        short = sync and self._short(run)
        self.store.create(run, short=short)
        logger.append_keys(run_id=run.run_id, task_id=run.task_id)
        if run.status is RunStatus.QUEUED and run.waiting_for is not None:
            return self._queue(run), wait_timeout
        if run.status is RunStatus.QUEUED:
            return self._put_off(run, wait_timeout)
        began = time.monotonic()
        ran = self._run_now(run) if sync else None
        if ran is None:
            if short and not self.store.list_as_active(run.run_id):  # it outlives this request after all
                return self._dispatch_failed(run, DispatchFailed("the run could not be listed as active")), None
            try:
                run = self._hand_over(run)
            except DispatchFailed as error:
                return self._dispatch_failed(run, error), None
        logger.info("run started", extra={"revision": run.revision, "triggered_by": run.triggered_by})
        count("RunsStarted")
        if ran is not None and wait_timeout is not None:  # run while this request waited: the rest of the wait
            run, wait_timeout = ran, max(0.0, wait_timeout - (time.monotonic() - began))
        return run, wait_timeout

    def dispatch_again(self, run: Run) -> Run:
        """Hand over again a pending run whose dispatch was lost (the local stack killed before
        its worker took it), as a new run is handed over. A repeat is harmless: the worker
        takes a run only from pending, and a flow's execution is named after its run."""
        logger.append_keys(run_id=run.run_id, task_id=run.task_id)
        if not self.store.list_as_active(run.run_id):  # were it short, it now outlives its request
            return self._dispatch_failed(run, DispatchFailed("the run could not be listed as active"))
        try:
            run = self._hand_over(run)
        except DispatchFailed as error:
            return self._dispatch_failed(run, error)
        logger.info("run dispatched again")
        return run

    def _hand_over(self, run: Run) -> Run:
        """A script to the worker, a flow's execution started (the run then running);
        DispatchFailed if it could not be handed over."""
        execution_arn = self.dispatcher.dispatch(run)
        return run if execution_arn is None else self._mark_flow_running(run, execution_arn)

    def _dispatch_failed(self, run: Run, error: DispatchFailed) -> Run:
        """A run that could not be handed over never starts: it ends dispatch_error."""
        logger.exception("dispatch failed")
        count("DispatchFailures")
        return self.store.finish(run.run_id, Ending.failed(self.clock(), ErrorType.DISPATCH_ERROR, str(error)))

    def _queue(self, run: Run) -> Run:
        """A run of a limited task waits for room (queued) and starts when its turn comes,
        which may be now."""
        assert self.admission is not None and run.waiting_for is not None
        self.admission.admit(run.waiting_for)
        logger.info("run queued for its limit", extra={"limit": run.waiting_for})
        count("RunsStarted")
        return self.store.get(run.run_id)

    def _put_off(self, run: Run, wait_timeout: float | None) -> tuple[Run, float | None]:
        """A run that starts later waits, queued, in the wake state machine."""
        assert self.waker is not None
        try:
            self.waker.wake_at(run)
        except DispatchFailed as error:
            logger.exception("the run's start could not be put off")
            count("DispatchFailures")
            ending = Ending.failed(self.clock(), ErrorType.DISPATCH_ERROR, str(error))
            return self.store.finish(run.run_id, ending), None
        logger.info("run queued", extra={"start_at": run.next_attempt_at, "triggered_by": run.triggered_by})
        count("RunsStarted")
        return run, wait_timeout

    def _runs_within(self, run: Run, wait_timeout: float) -> bool:
        """A script whose timeout fits the wait (with a margin for the worker's start), for a
        dispatcher that can run it so."""
        budget = min(wait_timeout, self.settings.max_wait_seconds)
        timeout = run.timeout or DEFAULT_TIMEOUT
        return (
            run.task_type is TaskType.SCRIPT
            and timeout + SYNC_MARGIN_SECONDS <= budget
            and getattr(self.dispatcher, "run_now", None) is not None
        )

    def _short(self, run: Run) -> bool:
        """A run to run while its request waits that is short (its timeout within
        SHORT_RUN_SECONDS, its id fresh)."""
        fits = (run.timeout or DEFAULT_TIMEOUT) + SYNC_MARGIN_SECONDS <= SHORT_RUN_SECONDS
        return fits and run.run_id >= first_run_id_at(time.time() - FRESH_ID_SECONDS)

    def _run_now(self, run: Run) -> Run | None:
        """Run a script in the worker while this request waits for it (a synchronous invoke),
        and answer it as it then stands: ended, unless another invocation had taken it. None
        when the worker could not be invoked so (throttled, say): the run is then handed over
        asynchronously, as any other. A failed invocation ends the run as the worker's
        on-failure destination would have."""
        run_now = getattr(self.dispatcher, "run_now", None)
        if run_now is None:
            return None
        try:
            answer = run_now(run)
        except DispatchFailed as error:
            logger.info(
                "the worker was not invoked synchronously; the run is handed over", extra={"reason": str(error)}
            )
            return None
        if isinstance(answer, Run):
            return answer
        from taskrun.runs.endings import end_crashed

        return end_crashed(self.store, run.run_id, answer, self.clock(), waker=self.waker)

    def _from_cache(self, run: Run) -> Run | None:
        if run.cache_key is None or self.cache is None:
            return None
        source_id = self.cache.find(run.cache_key, self.clock())
        if source_id is None:
            return None
        try:
            source = self.store.get(source_id)
        except RunNotFound:
            return None
        if source.status is not RunStatus.SUCCEEDED:
            return None
        now = self.clock()
        answer = run.model_copy(
            update={
                "status": RunStatus.SUCCEEDED,
                "result": source.result,
                "result_key": source.result_key,
                "cached": True,
                "cached_from": source.run_id,
                "cache_key": None,  # an answer from the cache does not become a cache entry itself
                "started_at": now,
                "ended_at": now,
                "duration_ms": 0,
            }
        )
        self.store.create(answer)
        logger.info("run answered from the cache", extra={"run_id": answer.run_id, "cached_from": source.run_id})
        count("RunsCached")
        return answer

    def _mark_flow_running(self, run: Run, execution_arn: str) -> Run:
        """A flow is running once its execution started (unless it has already ended)."""
        try:
            return self.store.mark_running(run.run_id, self.clock(), execution_arn=execution_arn)
        except RunConflict:
            return self.store.get(run.run_id)
