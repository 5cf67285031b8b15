"""The `taskrun` command against the local stack, as a user types it: in this process through
click's runner (the commands' own code, fast), and through the installed console script."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from typer.testing import CliRunner

from taskrun import __version__
from taskrun.catalog.masking import MASK
from taskrun.cli.commands import app
from tests.conftest import API_KEY, KEY_CACHE_SECONDS, modules_that_do_not_import
from tests.waiting import until

TASKRUN = str(Path(sys.executable).parent / "taskrun")


@pytest.fixture
def taskrun(base_url: str, short_server_waits: None) -> Iterator[Taskrun]:
    yield Taskrun({"TASKRUN_URL": base_url, "TASKRUN_API_KEY": API_KEY})


class Taskrun:
    """`taskrun ...` with the stack's address and key in the environment (or others)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def __call__(self, *args: str, stdin: str | None = None, **env: str | None) -> Ran:
        ran = CliRunner().invoke(app, list(args), env={**self.env, **env}, input=stdin, prog_name="taskrun")
        if ran.exception is not None and not isinstance(ran.exception, SystemExit):
            raise ran.exception
        return Ran(ran.exit_code, ran.stdout, ran.stderr)


class Ran:
    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def test_the_installed_command_runs_a_task_and_says_its_version(base_url: str) -> None:
    env = {**os.environ, "TASKRUN_URL": base_url, "TASKRUN_API_KEY": API_KEY}
    version = subprocess.run([TASKRUN, "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout == f"taskrun {__version__}\n"
    failed = subprocess.run(
        [TASKRUN, "run", "noisy/fail", "-a", "number=6"], env=env, capture_output=True, text=True, timeout=60
    )
    assert failed.returncode == 1 and "ValueError: 6 is too many" in failed.stderr


def test_run_prints_the_result_and_exits_0_when_it_succeeds_past_the_servers_wait_cap(taskrun: Taskrun) -> None:
    done = taskrun("run", "examples/sleep", "--arg", "seconds=2.5")
    assert done.returncode == 0, done.stderr
    assert "examples/sleep succeeded" in done.stderr
    added = taskrun("run", "team/add", "-a", "a=40", "-a", "b=2")
    assert (added.returncode, added.stdout) == (0, "42\n")


def test_arguments_from_a_json_file_and_stdin_and_raw_json_output(taskrun: Taskrun, tmp_path: Path) -> None:
    arguments = tmp_path / "args.json"
    arguments.write_text('{"name": "Ada", "times": 2}')
    greeted = taskrun("run", "examples/greet", "--json-args", str(arguments), "--arg", "times=1", "--json")
    run = json.loads(greeted.stdout)
    assert run["status"] == "succeeded" and run["arguments"]["name"] == "Ada" and run["arguments"]["times"] == 1
    piped = taskrun("run", "team/add", "--json-args", "-", stdin='{"a": 1, "b": 1}')
    assert piped.stdout == "2\n"
    refused = taskrun("run", "team/add", "--arg", "a")
    assert refused.returncode == 2 and "write it as name=value" in refused.stderr


def test_a_failed_run_exits_1_and_its_traceback_is_in_runs_logs(taskrun: Taskrun) -> None:
    failed = taskrun("run", "noisy/fail", "-a", "number=7")
    assert failed.returncode == 1
    assert "noisy/fail failed" in failed.stderr and "ValueError: 7 is too many" in failed.stderr
    source = (Path(__file__).parent / "user_tasks" / "noisy.py").read_text().splitlines()
    raising = next(number for number, line in enumerate(source, 1) if "is too many" in line)
    assert f"noisy.py:{raising} in _check" in failed.stderr
    run_id = failed.stderr.split("taskrun runs logs ")[1].split()[0]
    logs = taskrun("runs", "logs", run_id)
    assert logs.returncode == 0
    assert logs.stdout.startswith("checking 7\n") and logs.stdout.rstrip().endswith("ValueError: 7 is too many")
    assert "Traceback (most recent call last):" in logs.stdout
    shown = taskrun("runs", "get", run_id, "--json")
    assert shown.returncode == 1 and json.loads(shown.stdout)["error"]["exception_type"] == "ValueError"


def test_tagged_delayed_runs_reruns_and_batches(taskrun: Taskrun, tmp_path: Path) -> None:
    tag = f"cli-{uuid.uuid4().hex[:8]}"
    # a run with tags and a delay, listed by its tag
    started = taskrun("run", "examples/greet", "-a", "name=Ada", "--tag", tag, "--delay", "1", "--no-wait")
    run_id = started.stdout.strip()
    assert started.returncode == 0 and "is queued" in started.stderr
    listed = taskrun("runs", "list", "--tag", tag, "--json")
    assert [run["run_id"] for run in json.loads(listed.stdout)] == [run_id]
    # re-run, waited for
    again = taskrun("runs", "rerun", run_id, "--json")
    rerun = json.loads(again.stdout)
    assert again.returncode == 0 and rerun["rerun_of"] == run_id and rerun["tags"] == [tag]
    # a batch from a file, one request refused: exit 1, each line its outcome
    requests = tmp_path / "batch.json"
    requests.write_text(
        json.dumps([{"task_id": "examples/greet", "arguments": {"name": "Bo"}}, {"task_id": "no/such"}])
    )
    batch = taskrun("runs", "batch", str(requests), "--idempotency-key", uuid.uuid4().hex)
    lines = batch.stdout.splitlines()
    assert batch.returncode == 1 and len(lines) == 2
    assert lines[0].split()[:2] == ["0", "201"] and lines[0].split()[2].startswith("run_")
    assert lines[1].startswith("1 404 no task named 'no/such'")


def test_runs_list_get_cancel_and_history(taskrun: Taskrun) -> None:
    started = taskrun("run", "examples/sleep", "-a", "seconds=30", "--no-wait")
    assert started.returncode == 0
    run_id = started.stdout.strip()
    assert run_id.startswith("run_")
    listed = taskrun("runs", "list", "--task", "examples/sleep", "--limit", "5")
    assert run_id in listed.stdout  # the whole id, never cut
    still = taskrun("runs", "get", run_id, "--wait", "--timeout", "1")
    assert still.returncode == 2 and ("is running" in still.stderr or "is pending" in still.stderr)
    cancelled = taskrun("runs", "cancel", run_id)
    assert cancelled.stdout == f"{run_id} cancelled\n"
    again = taskrun("runs", "cancel", run_id)
    assert again.returncode == 1 and again.stderr.startswith("taskrun: 409") and again.stderr.count("\n") == 1
    flow = json.loads(taskrun("run", "team/relay", "-a", "size=5", "--json").stdout)
    history = taskrun("runs", "history", flow["run_id"])
    assert "Produce" in history.stdout and "Measure" in history.stdout
    assert taskrun("runs", "steps", flow["run_id"]).stdout == history.stdout  # the word the console uses


def test_tasks_list_and_show_its_parameters_as_a_table(taskrun: Taskrun) -> None:
    listed = taskrun("tasks", "list")
    assert "examples/greet" in listed.stdout and "team/add" in listed.stdout
    shown = taskrun("tasks", "show", "examples/greet")
    lines = shown.stdout.splitlines()
    assert lines[0] == "examples/greet (script)"
    assert any(line.split()[:3] == ["name", "string", "yes"] for line in lines)
    assert any(line.split()[:3] == ["times", "integer", "1"] for line in lines)
    # each parameter's limits, as the task declares them (tab-separated: not a terminal)
    cells = {line.split("\t")[0]: line.split("\t") for line in lines[1:] if "\t" in line}
    assert cells["parameter"][4] == "limits"
    assert cells["times"][4] == ">= 1; <= 10"
    missing = taskrun("tasks", "show", "nope/none")
    assert missing.returncode == 1 and missing.stderr == "taskrun: 404 Task not found: no task named 'nope/none'\n"


def test_tasks_list_and_show_say_which_modules_do_not_import(
    taskrun: Taskrun, api: httpx.Client, live_tasks: Path
) -> None:
    # Given a new module that does not import, and a loaded one saved with a syntax error
    with modules_that_do_not_import(api, live_tasks):
        # Then the list says, below the table, which module is not listed and why
        listed = taskrun("tasks", "list")
        assert listed.returncode == 0
        said = f"not listed: {live_tasks.name}/unimportable.py line 2 does not import (ModuleNotFoundError: No module"
        # (the stack runs in this process: what it prints meanwhile lands in the same stderr)
        assert any(line.startswith(said) for line in listed.stderr.splitlines()), listed.stderr
        # and marks the task whose module no longer imports, on the list and when shown
        row = next(line for line in listed.stdout.splitlines() if line.startswith("live/version"))
        assert "its module does not import:" in row and "SyntaxError" in row
        shown = taskrun("tasks", "show", "live/version").stdout.splitlines()
        assert shown[1].startswith("its module does not import, so it cannot run:") and "SyntaxError" in shown[1]
    assert "not listed" not in taskrun("tasks", "list").stderr


def test_a_flow_s_callback_is_listed_approved_and_rejected_from_the_cli(taskrun: Taskrun, api: httpx.Client) -> None:
    # Given a code-first flow waiting for an approval
    run_id = taskrun(
        "run", "examples/order_code", "-a", "order_id=cli-1", "-a", "quantity=1", "-a", "approval=true", "--no-wait"
    ).stdout.strip()
    until(lambda: "waiting" in taskrun("runs", "callbacks", run_id).stdout, 30)
    # Then its callbacks list the one it waits on
    (row,) = [line.split("\t") for line in taskrun("runs", "callbacks", run_id).stdout.splitlines()[1:]]
    assert row[0].startswith("cb_") and row[1:3] == ["approval", "waiting"], row
    # and approving it (the one waiting: no id needed) lets the flow go on to ship the order
    approved = taskrun("runs", "approve", run_id)
    assert approved.returncode == 0 and approved.stdout == f"{row[0]} (approval) succeeded\n", approved.stderr
    assert taskrun("runs", "get", run_id, "--wait", "--json").stdout.count('"status": "shipped"') == 1
    # and once nothing waits, another answer says so
    again = taskrun("runs", "approve", run_id)
    assert again.returncode == 1 and again.stderr == f"taskrun: {run_id} waits on no callback\n"

    # Given a state machine flow waiting for a decision, rejected with a cause
    asl = taskrun("run", "examples/approval", "-a", "requester=cli", "-a", "amount=9", "--no-wait").stdout.strip()
    until(lambda: "waiting" in taskrun("runs", "callbacks", asl).stdout, 30)
    rejected = taskrun("runs", "reject", asl, "--cause", "over budget", "--json")
    assert rejected.returncode == 0 and json.loads(rejected.stdout)["status"] == "failed", rejected.stderr
    ended = json.loads(taskrun("runs", "get", asl, "--wait", "--json").stdout)
    assert ended["result"] == {"requester": "cli", "amount": 9.0, "approved": False}, ended
    # An output that is not JSON is refused before anything is sent
    bad = taskrun("runs", "approve", asl, "--output", "{yes")
    assert bad.returncode == 2 and bad.stderr.startswith("taskrun: --output must be JSON")


def test_tables_piped_are_tab_separated_lines_never_wrapped(taskrun: Taskrun) -> None:
    # Given a list printed into a pipe (not a terminal)
    listed = taskrun("tasks", "list")
    lines = listed.stdout.splitlines()
    # Then each task is one line of tab-separated cells under a header, however long
    assert lines[0].split("\t") == ["task", "type", "description"]
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert rows["examples/greet"][1] == "script" and len(rows["examples/greet"]) == 3
    assert all(len(row) == 3 for row in rows.values())


def test_schedules_commands(taskrun: Taskrun) -> None:
    made = taskrun(
        "schedules", "create", "team/add", "rate(1 day)", "-a", "a=3",
        "--overlap", "skip", "--description", "daily sum", "--webhook-url", "https://hooks.example.org/s",
        "--tag", "daily",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    schedule_id = made.stdout.strip()
    assert schedule_id in taskrun("schedules", "list").stdout
    assert taskrun("schedules", "disable", schedule_id).stdout == f"{schedule_id} disabled\n"
    assert taskrun("schedules", "enable", schedule_id).stdout == f"{schedule_id} scheduled\n"
    assert taskrun("schedules", "pause", schedule_id).stdout == f"{schedule_id} disabled\n"  # the earlier word
    assert taskrun("schedules", "resume", schedule_id).stdout == f"{schedule_id} scheduled\n"
    assert "pause" not in taskrun("schedules", "--help").stdout
    run_id = taskrun("schedules", "run", schedule_id).stdout.strip()
    assert taskrun("runs", "get", run_id, "--wait").stdout == "3\n"
    shown = json.loads(taskrun("schedules", "get", schedule_id).stdout)
    assert shown["task_id"] == "team/add" and shown["overlap"] == "skip" and shown["description"] == "daily sum"
    assert shown["webhook_url"] == "https://hooks.example.org/s" and shown["tags"] == ["daily"]
    # its runs, by schedule and by trigger
    by_schedule = json.loads(taskrun("runs", "list", "--schedule", schedule_id, "--json").stdout)
    assert [run["run_id"] for run in by_schedule] == [run_id]
    by_trigger = json.loads(taskrun("runs", "list", "--triggered-by", "schedule", "--limit", "100", "--json").stdout)
    assert run_id in [run["run_id"] for run in by_trigger]
    assert all(run["triggered_by"] == "schedule" for run in by_trigger)
    assert taskrun("schedules", "delete", schedule_id).returncode == 0


def test_the_schedules_commands_show_a_schedule_s_secret_arguments_masked(taskrun: Taskrun) -> None:
    # Given a schedule made with a password
    password = "hunter2-correct-horse"
    made = taskrun(
        "schedules", "create", "secret/login", "rate(1 day)", "-a", "user=ada", "-a", f"password={password}", "--json"
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    schedule_id = json.loads(made.stdout)["schedule_id"]

    # When it is made, read and listed with the commands
    shown = [made.stdout, taskrun("schedules", "get", schedule_id).stdout]
    shown.append(taskrun("schedules", "list", "--json").stdout)

    # Then each shows the password masked, never the password
    for text in shown:
        assert password not in text
    assert json.loads(shown[1])["arguments"] == {"user": "ada", "password": MASK, "token": None, "fail": False}
    (listed,) = [s for s in json.loads(shown[2]) if s["schedule_id"] == schedule_id]
    assert listed["arguments"]["password"] == MASK
    # and its run now's task had the password itself
    run_id = taskrun("schedules", "run", schedule_id).stdout.strip()
    result = json.loads(taskrun("runs", "get", run_id, "--wait").stdout)
    assert result["password_length"] == len(password)
    assert taskrun("schedules", "delete", schedule_id).returncode == 0
    assert taskrun("schedules", "get", schedule_id).returncode == 1


def test_keys_create_list_and_revoke_against_the_local_stack(taskrun: Taskrun) -> None:
    made = taskrun("keys", "create", "--name", "cli-test")
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    key_id = made.stderr.split("key_id: ")[1].split()[0]
    assert secret.startswith("trk_") and key_id in taskrun("keys", "list").stdout
    assert taskrun("tasks", "list", TASKRUN_API_KEY=secret).returncode == 0
    refused = taskrun("keys", "list", TASKRUN_API_KEY=secret)
    assert refused.returncode == 1 and refused.stderr.startswith("taskrun: 403")
    assert taskrun("keys", "revoke", key_id).stdout == f"{key_id} revoked\n"
    time.sleep(KEY_CACHE_SECONDS)  # the authorizer's copy of the key lapses
    assert taskrun("tasks", "list", TASKRUN_API_KEY=secret).stderr.startswith("taskrun: 401")


def test_keys_create_with_scopes_and_task_patterns(taskrun: Taskrun) -> None:
    # A key that may only read, and only the team's tasks
    made = taskrun("keys", "create", "--name", "reader", "--scope", "runs:read", "--task", "team/*")
    assert made.returncode == 0, made.stderr
    reader = made.stdout.strip()
    listed = taskrun("tasks", "list", "--json", TASKRUN_API_KEY=reader)
    assert listed.returncode == 0 and "team/add" in listed.stdout and "examples/greet" not in listed.stdout
    refused = taskrun("run", "team/add", "--arg", "a=1", TASKRUN_API_KEY=reader)
    assert refused.returncode == 1 and refused.stderr.startswith("taskrun: 403")
    shown = [key for key in json.loads(taskrun("keys", "list", "--json").stdout) if key["name"] == "reader"]
    assert [(key["scopes"], key["tasks"]) for key in shown] == [(["runs:read"], ["team/*"])]
    bad = taskrun("keys", "create", "--scope", "root")
    assert bad.returncode != 0 and "unknown scope 'root'" in bad.stderr


def test_version_help_and_clear_one_line_errors(taskrun: Taskrun, tmp_path: Path) -> None:
    for command in (
        ["run"],
        ["runs", "list"],
        ["runs", "get"],
        ["runs", "cancel"],
        ["runs", "history"],
        ["runs", "logs"],
        ["tasks", "list"],
        ["tasks", "show"],
        ["schedules", "list"],
        ["schedules", "create"],
        ["schedules", "delete"],
        ["keys", "create"],
        ["keys", "list"],
        ["keys", "revoke"],
        ["local"],
    ):
        helped = taskrun(*command, "--help")
        assert helped.returncode == 0 and f"Example: taskrun {' '.join(command)}" in helped.stdout, command
    # no stack at the address
    away = taskrun("tasks", "list", TASKRUN_URL="http://127.0.0.1:9")
    assert away.returncode == 1 and away.stderr == "taskrun: cannot reach http://127.0.0.1:9\n"
    # AWS without a region or credentials, writing a key straight into a table
    bare: dict[str, str | None] = {name: None for name in os.environ if name.startswith("AWS_")}
    config = {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    no_region = taskrun("keys", "create", "--table", "taskrun-keys", **bare, **config)
    assert no_region.returncode == 1 and no_region.stderr.startswith("taskrun: no AWS region")
    assert no_region.stderr.count("\n") == 1 and "Traceback" not in no_region.stderr
    regional = {**bare, **config, "AWS_DEFAULT_REGION": "eu-west-1"}
    no_credentials = taskrun("keys", "create", "--table", "taskrun-keys", **regional)
    assert no_credentials.returncode == 1 and no_credentials.stderr.startswith("taskrun: no AWS credentials")


def test_a_wait_on_a_terminal_shows_a_spinner_with_the_time_spent(base_url: str) -> None:
    import pty
    import re

    main, side = pty.openpty()
    env = {**os.environ, "TASKRUN_URL": base_url, "TASKRUN_API_KEY": API_KEY, "TERM": "xterm", "COLUMNS": "100"}
    with subprocess.Popen(
        [TASKRUN, "run", "examples/sleep", "-a", "seconds=1.5"], env=env, stdout=subprocess.PIPE, stderr=side
    ) as process:
        os.close(side)
        seen = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # the terminal closed with the process
                break
            if not chunk:
                break
            seen += chunk
        assert process.wait(60) == 0
    os.close(main)
    shown = seen.decode(errors="replace")
    assert "running examples/sleep" in shown
    # the time spent so far, going up as the spinner turns (which figures it shows depends on
    # the machine's speed)
    spent = {float(figure) for figure in re.findall(r"running examples/sleep (\d+\.\d)s", shown)}
    assert len(spent) >= 2 and max(spent) >= 1.0, shown[-500:]
    assert "examples/sleep succeeded" in shown


def test_the_local_stack_s_kept_key_is_used_when_none_is_given(
    taskrun: Taskrun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a folder where `taskrun local` kept its key, and no TASKRUN_API_KEY
    (tmp_path / ".taskrun").mkdir()
    (tmp_path / ".taskrun" / "api-key").write_text(API_KEY + "\n")
    monkeypatch.chdir(tmp_path)
    # Then a command against the stack on this machine uses that key
    listed = taskrun("tasks", "list", "--json", TASKRUN_API_KEY=None)
    assert listed.returncode == 0, listed.stderr
    assert "examples/greet" in listed.stdout
    # and elsewhere, with no key at all, the API refuses
    monkeypatch.chdir(tmp_path.parent)
    assert taskrun("tasks", "list", TASKRUN_API_KEY=None).stderr.startswith("taskrun: 401")


def test_mcp_prints_a_host_configuration_that_the_official_client_connects_with(taskrun: Taskrun) -> None:
    # When the configuration is asked for
    ran = taskrun("mcp", "--name", "team-tasks")
    assert ran.returncode == 0, ran.stderr
    server = json.loads(ran.stdout)["mcpServers"]["team-tasks"]
    assert server["type"] == "http" and server["url"] == f"{taskrun.env['TASKRUN_URL']}/mcp"
    assert server["headers"] == {"Authorization": f"Bearer {API_KEY}"}
    assert "tasks are tools for this key" in ran.stderr

    # Then an MCP client given just that lists the tools and calls one
    async def use() -> tuple[set[str], object]:
        async with (
            httpx2.AsyncClient(headers=server["headers"], timeout=60) as http,
            Client(streamable_http_client(server["url"], http_client=http)) as client,
        ):
            tools = {tool.name for tool in (await client.list_tools()).tools}
            called = await client.call_tool("examples__echo", {"message": "over mcp"})
            return tools, called.structured_content

    tools, echoed = asyncio.run(use())
    assert {"examples__greet", "examples__order__reserve"} <= tools
    assert echoed == {"message": "over mcp", "note": ""}
    # and with a key that is refused, the command says so in one line
    refused = taskrun("mcp", TASKRUN_API_KEY="trk_wrong")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("taskrun: ") and len(refused.stderr.strip().splitlines()) == 1


def test_keys_create_by_a_limited_admin_key_is_refused_beyond_its_own(taskrun: Taskrun) -> None:
    made = taskrun(
        "keys", "create", "--name", "team-admin", "--scope", "admin", "--scope", "runs:read", "--task", "team/*"
    )
    assert made.returncode == 0, made.stderr
    manager = made.stdout.strip()
    wider = taskrun("keys", "create", "--scope", "runs:read", "--task", "billing/*", TASKRUN_API_KEY=manager)
    assert wider.returncode == 1 and wider.stderr.startswith("taskrun: 403")
    assert "billing/*" in wider.stderr
    within = taskrun("keys", "create", "--scope", "runs:read", "--task", "team/add", TASKRUN_API_KEY=manager)
    assert within.returncode == 0, within.stderr


def test_a_code_first_flow_from_the_command_line(taskrun: Taskrun) -> None:
    shown = taskrun("tasks", "show", "examples/order_code")
    assert shown.stdout.splitlines()[0] == "examples/order_code (flow)"
    ran = taskrun("run", "examples/order_code", "-a", "order_id=c-1", "-a", "quantity=2", "--json")
    assert ran.returncode == 0, ran.stderr
    run = json.loads(ran.stdout)
    assert run["status"] == "succeeded" and run["result"]["tracking"] == "STA-c-1"
    history = taskrun("runs", "history", run["run_id"])
    assert history.returncode == 0
    for step in ("reserve", "price", "ship-standard"):
        assert step in history.stdout


def test_the_logs_of_a_run_that_printed_nothing_say_so(taskrun: Taskrun) -> None:
    ran = taskrun("run", "team/add", "-a", "a=1", "-a", "b=2", "--json")
    run_id = json.loads(ran.stdout)["run_id"]
    logs = taskrun("runs", "logs", run_id)
    assert logs.returncode == 0 and logs.stdout == ""
    assert logs.stderr.strip() == f"(run {run_id} printed and logged nothing)"


def test_every_get_and_list_subcommand_takes_json(taskrun: Taskrun, tmp_path: Path) -> None:
    """Each subcommand that shows something (a get, a list, show, history, logs) prints the
    API's JSON with --json."""
    from taskrun.cli.base import keys_app, runs_app, schedules_app, secrets_app, tasks_app

    showing = {"get", "list", "show", "history", "logs"}
    groups = {
        "keys": keys_app,
        "runs": runs_app,
        "schedules": schedules_app,
        "secrets": secrets_app,
        "tasks": tasks_app,
    }
    seen = []
    for group, commands in groups.items():
        for command in commands.registered_commands:
            if command.name in showing:
                seen.append(f"{group} {command.name}")
                assert "--json" in taskrun(group, command.name, "--help").stdout, seen[-1]
    assert len(seen) >= 9
    # and what they print is JSON
    made = taskrun("schedules", "create", "examples/greet", "rate(1 day)", "-a", "name=Jo", "--json")
    schedule_id = json.loads(made.stdout)["schedule_id"]
    try:
        assert json.loads(taskrun("schedules", "get", schedule_id, "--json").stdout)["schedule_id"] == schedule_id
    finally:
        taskrun("schedules", "delete", schedule_id)
    folder = tmp_path / "secrets"
    assert taskrun("secrets", "set", "cli-json", "--dir", str(folder), "--value", "v").returncode == 0
    assert json.loads(taskrun("secrets", "list", "--dir", str(folder), "--json").stdout) == ["cli-json"]


def test_a_refused_key_says_where_a_key_comes_from(taskrun: Taskrun) -> None:
    wrong = taskrun("runs", "list", TASKRUN_API_KEY="tr_wrong_0000000000000000000000")
    assert wrong.returncode == 1
    assert (
        "401 Unauthorized" in wrong.stderr
        and "the key given was refused: pass --key, or set TASKRUN_API_KEY" in wrong.stderr
    )
    assert ".taskrun/api-key" in wrong.stderr  # where taskrun local keeps its key, from the API's answer
    missing = taskrun("runs", "list", TASKRUN_API_KEY=None)
    assert missing.returncode == 1 and "no API key was given: pass --key" in missing.stderr


def test_runs_list_shows_when_each_run_was_made_and_when_it_started(taskrun: Taskrun) -> None:
    tag = f"cols-{uuid.uuid4().hex[:8]}"
    ran = json.loads(taskrun("run", "team/add", "-a", "a=1", "-a", "b=1", "--tag", tag, "--json").stdout)
    queued = json.loads(
        taskrun(
            "run", "team/add", "-a", "a=2", "-a", "b=2", "--tag", tag, "--delay", "600", "--no-wait", "--json"
        ).stdout
    )
    try:
        lines = taskrun("runs", "list", "--tag", tag).stdout.splitlines()  # not a terminal: tab-separated
        assert lines[0].split("\t") == ["run", "task", "status", "created", "started", "ms"]
        rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
        assert rows[queued["run_id"]][2] == "queued" and rows[queued["run_id"]][4] == ""  # not started yet
        assert rows[ran["run_id"]][2] == "succeeded" and rows[ran["run_id"]][4] >= rows[ran["run_id"]][3] != ""
        # a queued run, got without waiting, says when it will start
        got = taskrun("runs", "get", queued["run_id"])
        assert got.returncode == 2
        start = queued["next_attempt_at"].replace("T", " ")[:19]
        assert f"team/add is queued until {start} UTC, in " in got.stderr, got.stderr
        assert 0 < int(got.stderr.split(", in ")[1].split(" s")[0]) <= 600
    finally:
        taskrun("runs", "cancel", queued["run_id"])


def test_arg_values_are_read_by_the_parameter_s_type(taskrun: Taskrun) -> None:
    # a text parameter keeps text that reads as JSON (a number, a boolean) as the text it is
    greeted = taskrun("run", "examples/greet", "--arg", "name=123", "--json")
    assert greeted.returncode == 0, greeted.stderr
    assert json.loads(greeted.stdout)["arguments"]["name"] == "123"
    echoed = json.loads(taskrun("run", "examples/echo", "-a", "message=true", "-a", "note=[1]", "--json").stdout)
    assert echoed["arguments"] == {"message": "true", "note": "[1]"}
    # an Optional text parameter still takes null, and numbers stay numbers where numbers are asked
    assert (
        json.loads(taskrun("run", "examples/echo", "-a", "message=null", "--json").stdout)["result"]["message"] is None
    )
    assert taskrun("run", "team/add", "-a", "a=40", "-a", "b=2").stdout == "42\n"
    # a value that cannot be the parameter's type is refused before anything is sent, saying how to write it
    for pair, said in [
        ("approval=True", "approval takes true or false"),
        ("quantity=two", "quantity takes a whole number (count=3)"),
    ]:
        refused = taskrun("run", "examples/order_code", "-a", "order_id=x", "-a", pair)
        assert refused.returncode == 2 and refused.stderr == f"taskrun: --arg {pair!r}: {said}\n", refused.stderr
    listed = taskrun("run", "examples/math/sum", "-a", "numbers=1,2")
    assert listed.returncode == 2
    assert listed.stderr == "taskrun: --arg 'numbers=1,2': numbers takes a list, as JSON (tags='[\"a\", \"b\"]')\n"
    assert taskrun("run", "examples/math/sum", "-a", "numbers=[1,2]").stdout == "3\n"
    # a whole number is a number too
    assert taskrun("run", "examples/sleep", "-a", "seconds=0").returncode == 0
    # and the help says how
    assert "read by the parameter's type" in " ".join(taskrun("run", "--help").stdout.split())


CLIENT_PROBE = """
import json, sys
import taskrun.cli.commands
import taskrun.client
loaded = sorted(name for name in ("httpx", "taskrun.client.sync", "taskrun.client.asynchronous") if name in sys.modules)
names = {name: getattr(getattr(taskrun.client, name), "__module__", "constant") for name in taskrun.client.__all__}
print(json.dumps({"loaded_with_the_commands": loaded, "names": names}))
"""


def test_the_commands_load_the_api_client_only_when_a_command_calls_the_api() -> None:
    """`taskrun local` (the stack's own process) has no use for httpx and the API client: the
    command's modules leave them unloaded, and every public name of taskrun.client still
    resolves, to the class its module defines."""
    probe = subprocess.run([sys.executable, "-c", CLIENT_PROBE], capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    assert seen["loaded_with_the_commands"] == []
    names = seen["names"]
    assert names.pop("DEFAULT_URL") == "constant"
    assert names.pop("Client") == "taskrun.client.sync"
    assert names.pop("AsyncClient") == "taskrun.client.asynchronous"
    assert set(names.values()) == {"taskrun.client.errors"} and len(names) == 11


def test_a_local_stack_that_cannot_start_leaves_the_collector_on(tmp_path: Path) -> None:
    """`taskrun local` pauses the garbage collector while the stack starts; a start refused
    (here a tasks directory that does not exist) ends the command with the collector as it
    was, in a program that runs the command in its own process and goes on."""
    import gc

    refused = CliRunner().invoke(app, ["local", "--ephemeral", "--tasks", str(tmp_path / "missing")])
    assert refused.exit_code == 2 and "does not exist" in refused.output
    assert gc.isenabled()
