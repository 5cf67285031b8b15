"""Schedules: a task run at a time or over and over, in EventBridge Scheduler's own syntax.

A schedule is a record in the schedules table (the one source of truth: what the API
shows) and an EventBridge Scheduler schedule in the stack's group, whose target, the
schedule-target function, starts the run through the same run service as the API
(`triggered_by: schedule`). Locally the stack's own clock fires them (taskrun.local).

A schedule's state and next run are worked out when it is read, from its record and its
last run: nothing has to be written when a run ends.

The package's parts: `models` (what a schedule is), `expressions` (EventBridge Scheduler's
syntax and time zones), `store` (the table), `eventbridge` (the schedules on EventBridge
Scheduler) and `service` (the API's and the target's operations).
"""
