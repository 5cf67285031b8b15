"""`taskrun schedules`: runs on a timetable."""

from __future__ import annotations

from typing import Annotated

import typer

from taskrun.cli.base import (
    ARG_HELP,
    JsonOption,
    api,
    arguments_for,
    err,
    out,
    print_json,
    print_table,
    schedules_app,
    table,
)


@schedules_app.command("list", epilog="Example: taskrun schedules list")
def schedules_list(as_json: JsonOption = False) -> None:
    """Every schedule and when it runs next."""
    with api() as client:
        found = list(client.schedules())
    if as_json:
        print_json(found)
        return
    shown = table("schedule", "task", "expression", "state", "next run")
    for item in found:
        following = item.next_run_at.strftime("%Y-%m-%d %H:%M:%S") if item.next_run_at else ""
        shown.add_row(item.schedule_id, item.task_id, item.expression, item.state.value, following)
    print_table(shown)


@schedules_app.command(
    "create", epilog="Example: taskrun schedules create examples/greet 'cron(0 9 * * ? *)' --arg name=Ada"
)
def schedules_create(
    task_id: str,
    expression: Annotated[str, typer.Argument(help="cron(...), rate(...) or at(...).")],
    arg: Annotated[list[str] | None, typer.Option("--arg", "-a", help=ARG_HELP)] = None,
    json_args: Annotated[str | None, typer.Option("--json-args", help="A JSON file of arguments.")] = None,
    timezone: Annotated[str, typer.Option(help="The expression's IANA time zone.")] = "UTC",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="Tag each of its runs (repeatable).")] = None,
    overlap: Annotated[
        str | None, typer.Option(help="allow (the default) or skip: skip a firing while the last run goes on.")
    ] = None,
    description: Annotated[str | None, typer.Option(help="What the schedule is for.")] = None,
    webhook_url: Annotated[str | None, typer.Option("--webhook-url", help="Each run's webhook.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Schedule a task."""
    fields = {"tags": tag, "overlap": overlap, "description": description, "webhook_url": webhook_url}
    with api() as client:
        arguments = arguments_for(client, task_id, arg or [], json_args)
        made = client.create_schedule(task_id, expression, arguments=arguments, timezone=timezone, **fields)
    if as_json:
        print_json(made)
    else:
        out.print(made.schedule_id, markup=False)
        err.print(f"next run: {made.next_run_at}", markup=False)


@schedules_app.command("get", epilog="Example: taskrun schedules get sch_01m8496zv092capcb6htkybrew")
def schedules_get(schedule_id: str, as_json: JsonOption = False) -> None:
    """One schedule, as JSON (with or without --json, the flag every get and list takes)."""
    with api() as client:
        print_json(client.get_schedule(schedule_id))


@schedules_app.command("disable", epilog="Example: taskrun schedules disable sch_01m8496zv092capcb6htkybrew")
def schedules_disable(schedule_id: str) -> None:
    """Stop a schedule firing until it is enabled again (its `enabled` false, its state `disabled`)."""
    with api() as client:
        out.print(f"{schedule_id} {client.update_schedule(schedule_id, enabled=False).state.value}")


@schedules_app.command("enable", epilog="Example: taskrun schedules enable sch_01m8496zv092capcb6htkybrew")
def schedules_enable(schedule_id: str) -> None:
    """Let a disabled schedule fire again."""
    with api() as client:
        out.print(f"{schedule_id} {client.update_schedule(schedule_id, enabled=True).state.value}")


# the words of earlier versions, kept working for scripts that use them, out of the help
schedules_app.command("pause", hidden=True)(schedules_disable)
schedules_app.command("resume", hidden=True)(schedules_enable)


@schedules_app.command("run", epilog="Example: taskrun schedules run sch_01m8496zv092capcb6htkybrew")
def schedules_run(schedule_id: str) -> None:
    """Run a schedule's task now; prints the run's id."""
    with api() as client:
        out.print(client.execute_schedule(schedule_id).run_id, markup=False)


@schedules_app.command("delete", epilog="Example: taskrun schedules delete sch_01m8496zv092capcb6htkybrew")
def schedules_delete(schedule_id: str) -> None:
    """Delete a schedule (its runs are kept)."""
    with api() as client:
        client.delete_schedule(schedule_id)
    out.print(f"{schedule_id} deleted", markup=False)
