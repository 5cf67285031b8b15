"""Every performance figure in one command: `.venv/bin/python bench/run.py [--quick] [--json FILE]`.

Prints, as tables, and saves as JSON (bench/results.json by default):
1. cold start: each handler module's import time in a fresh interpreter (median), beside a
   bare `import boto3` in the same run, and the ratio, every module imported from its
   bytecode (compiled first, taskrun's as the layers ship it); then the same as Lambda loads them:
   from the layers as their Makefiles build them, under the template's Python writing no
   bytecode (when this machine has that Python);
2. AWS requests per run, counted by service and operation (botocore events in every
   sandbox), for a waited script run, an unwaited run read back with a GET, and each
   bundled flow; turned into billed units and dollars per million runs at list prices;
3. the sync-wait lag: from a run's recorded end to the waiting call's answer, and the
   run-record reads a waiter makes a second;
4. throughput at 1 to 8 clients (runs started and ended per second, and the CPU a run
   takes in the stack's process and in the sandboxes), and the idle stack's CPU;
5. list latency and queries with 10 and with 10,000 runs in the table;
6. a 40-step sequential flow: milliseconds a step, end to end and taken apart (in the
   worker's invocation, around it within the step, between steps, the flow's start and end),
   as ASL and as a code-first flow, with what a million runs of each cost at list prices;
7. the stack's memory (RSS and PSS of all its processes) at rest, after the throughput
   burst, and once idle sandboxes have been retired (`--keep-idle`: as if they never were).
Every figure comes from runs whose outcome is checked: each scenario's runs are counted by
final status and printed beside it, and the command exits 1, naming the scenario, when a
run meant to succeed did not (or did not do what it was meant to, such as sleep).
All on the local stack (moto), on this machine: docs/performance.md says what that
inflates or hides compared with AWS.
"""

from __future__ import annotations

import argparse
import collections
import gc
import itertools
import json
import math
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from taskrun.aws import CALL_LOG

# The stack (moto, Flask and the rest), the template's reader and httpx are imported where they are
# used, not here: each sandbox imports the program's main module again (multiprocessing), so
# a benchmark that imported them at its top would count ~28 MB a sandbox that `taskrun
# local`'s do not hold.

ROOT = Path(__file__).resolve().parents[1]
KEY = "bench-key"
NOOP = {"task_id": "examples/echo", "arguments": {"message": "bench"}}

# List prices, us-east-1 (USD): API Gateway REST, Lambda arm64, DynamoDB on-demand,
# Step Functions Standard, S3, SQS.
PRICE = {
    "api_request": 3.50e-6,
    "lambda_request": 0.20e-6,
    "lambda_gb_second": 0.0000133334,
    "dynamodb_write_unit": 0.625e-6,
    "dynamodb_read_unit": 0.125e-6,
    "sfn_transition": 25e-6,
    "durable_operation": 8e-6,  # Lambda durable functions
    "s3_put": 5e-6,
    "s3_get": 0.4e-6,
    "sqs_request": 0.40e-6,
}
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}
READS = {"GetItem", "Query", "Scan", "BatchGetItem"}

IMPORT_PROBE = """
import importlib.util, sys, time
began = time.perf_counter()
if sys.argv[1] == "boto3":
    import boto3
else:
    spec = importlib.util.spec_from_file_location("app", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
imported = time.perf_counter()
if len(sys.argv) > 2:  # then the first call, with a sample event
    import json

    from aws_lambda_powertools.utilities.typing import LambdaContext

    class Context(LambdaContext):
        _function_name = "bench"
        _memory_limit_in_mb = 512
        _invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"
        _aws_request_id = "bench"

    event = json.loads(open(sys.argv[2]).read())
    module.lambda_handler(event, Context())
print((imported - began) * 1000, (time.perf_counter() - imported) * 1000)
"""

IDLE_SECONDS = 5.0
CHAIN_STEPS = 40
CHAIN_MODULE = """
import time

from aws_durable_execution_sdk_python import DurableContext
from pydantic import BaseModel

from taskrun import flow, task


@task("bench/inc", timeout=10)
def inc(n: int) -> int:
    return n + 1


@task("bench/nap", timeout=10)
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


class ChainArgs(BaseModel):
    n: int = 0


flow("bench/chain", definition="chain.asl.json", parameters=ChainArgs)


@flow("bench/chain_code", timeout=600)
def chain_code(context: DurableContext, n: int = 0, steps: int = 40) -> dict:
    \"\"\"The same chain as a code-first flow: each step adds one, checkpointed.\"\"\"
    for index in range(steps):
        n = context.step(lambda step, value=n: value + 1, name=f"step{index}")
    return {"n": n}
"""


def chain_definition(steps: int) -> dict[str, Any]:
    states: dict[str, Any] = {}
    for index in range(steps):
        states[f"Step{index}"] = {
            "Type": "Task",
            "Resource": "arn:aws:states:::lambda:invoke",
            "Parameters": {
                "FunctionName": "${WorkerFunctionArn}",
                "Payload": {"task_id": "bench/inc", "arguments": {"n.$": "$.n"}},
            },
            "ResultSelector": {"n.$": "$.Payload"},
            **({"Next": f"Step{index + 1}"} if index + 1 < steps else {"End": True}),
        }
    return {"Comment": f"{steps} steps, one after another", "StartAt": "Step0", "States": states}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _ms(earlier: str, later: str) -> float:
    """Milliseconds between two of a run's timestamps."""
    return (_at(later) - _at(earlier)).total_seconds() * 1000


Check = Callable[[dict[str, Any]], str | None]  # what is wrong with a run that succeeded, if anything


class Outcomes:
    """How each scenario's runs ended, against how they were meant to."""

    def __init__(self) -> None:
        self.counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        self.wrong: dict[str, list[str]] = collections.defaultdict(list)
        self._lock = threading.Lock()

    def add(self, scenario: str, run: dict[str, Any], check: Check | None = None) -> None:
        """Count a run that was meant to succeed (and pass `check`, which names what is wrong)."""
        status = str(run.get("status"))
        problem = None
        if status != "succeeded":
            error = run.get("error") or {}
            problem = f"{run.get('run_id')} {status}: {error.get('type')}: {str(error.get('message'))[:200]}"
        elif check is not None and (wrong := check(run)) is not None:
            problem = f"{run.get('run_id')}: {wrong}"
        with self._lock:
            self.counts[scenario][status] += 1
            if problem is not None:
                self.wrong[scenario].append(problem)

    def add_status(self, scenario: str, status: str) -> None:
        self.add(scenario, {"status": status, "run_id": "(a run)"})

    def verdict(self) -> int:
        """Name each scenario with a run that did not end as meant, on stderr: 1 if any, else 0."""
        for name, problems in self.wrong.items():
            if not problems:
                continue
            first = problems[0]
            print(f"\nFAILED: {name}: {len(problems)} run(s) did not end as meant, first: {first}", file=sys.stderr)
        return 1 if any(self.wrong.values()) else 0

    def of(self, scenario: str) -> str:
        """`64 succeeded`, `63 succeeded 1 failed`, and `(1 wrong)` when one did not do its part."""
        counts = self.counts[scenario]
        text = " ".join(f"{count} {status}" for status, count in counts.most_common())
        wrong = len(self.wrong.get(scenario, [])) - sum(n for status, n in counts.items() if status != "succeeded")
        return text + (f" ({wrong} wrong)" if wrong else "")


OUTCOMES = Outcomes()


def table(title: str, header: list[str], rows: list[list[Any]]) -> None:
    print(f"\n## {title}")
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    for row in [header, *rows]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)))


# ------------------------------------------------------------------------------ 1. cold start


def cold_starts(repeats: int) -> dict[str, Any]:
    # Every module imported from its bytecode, taskrun's as much as boto3's (installed
    # packages come compiled; the layers ship taskrun's compiled too): compiled once, into a
    # cache of this run's own, by an import that is not timed. A machine that writes no
    # bytecode (PYTHONDONTWRITEBYTECODE) would otherwise time the compiling of taskrun's
    # modules, on every import, beside a boto3 that is never compiled.
    cache = tempfile.mkdtemp(prefix="taskrun-bench-pyc-")
    env = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
    env.update(TASKRUN_TASK_DIRS=str(ROOT / "tasks"), POWERTOOLS_TRACE_DISABLED="true", PYTHONPYCACHEPREFIX=cache)

    def timed(*target: str) -> list[float]:
        probe = [sys.executable, "-c", IMPORT_PROBE, *target]
        return [
            float(part)
            for part in subprocess.run(probe, capture_output=True, text=True, check=True, env=env).stdout.split()
        ]

    # interleaved: each round imports boto3 and every handler once, so that a machine busier
    # in one moment than another weighs on all of them alike
    apps = {app.parent.name: str(app) for app in sorted(ROOT.glob("functions/*/app.py"))}
    for target in ("boto3", *apps.values()):  # the bytecode, written
        timed(target)
    samples: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(repeats):
        samples["boto3"].append(timed("boto3")[0])
        for name, app in apps.items():
            samples[name].append(timed(app)[0])
    boto3_ms = statistics.median(samples["boto3"])
    handlers = {name: statistics.median(samples[name]) for name in apps}
    # The first call after import, for the functions that answer without AWS (with a sample event)
    first_calls = {
        name: statistics.median(timed(apps[name], str(ROOT / "events" / event))[-1] for _ in range(repeats))
        for name, event in (("health", "health.json"), ("docs", "docs_openapi.json"))
    }
    shutil.rmtree(cache, ignore_errors=True)
    table(
        f"Cold start: handler import from bytecode, median of {repeats} fresh interpreters "
        f"(bare boto3: {boto3_ms:.0f} ms)",
        ["function", "import ms", "x boto3", "first call ms"],
        [
            [name, f"{ms:.0f}", f"{ms / boto3_ms:.2f}", f"{first_calls[name]:.0f}" if name in first_calls else ""]
            for name, ms in handlers.items()
        ],
    )
    return {"boto3_ms": boto3_ms, "handlers_ms": handlers, "first_call_ms": first_calls}


def layer_cold_starts(repeats: int) -> dict[str, Any] | None:
    """Each handler's import as Lambda loads it: from the layers as `sam build` builds them
    (their Makefiles, for this machine's processor), under the template's Python with `-S`
    (no other packages) and `-B` (nothing written: Lambda's /opt is read-only), beside a
    bare `import boto3` from the same layer. None on a machine without that Python."""
    machine = "aarch64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    make = ["make", "-s", f"PLATFORM=manylinux2014_{machine}", f"PYTHON={sys.executable}"]
    asked = subprocess.run(
        [*make, "-f", str(ROOT / "layers/core/Makefile"), "--eval", "pyc-python: ; @echo $(PYC_PYTHON)", "pyc-python"],
        capture_output=True,
        text=True,
        check=True,
    )
    python = asked.stdout.strip()
    if not python:
        print("\n(no Python of the template's version here: the imports from the built layers are not measured)")
        return None
    with tempfile.TemporaryDirectory() as folder:
        layers = {}
        for layer, makefile in (("CoreLayer", "layers/core/Makefile"), ("McpLayer", "layers/mcp/Makefile")):
            out = Path(folder) / layer
            subprocess.run(
                [*make, "-f", str(ROOT / makefile), f"build-{layer}"],
                env={**os.environ, "ARTIFACTS_DIR": str(out)},
                cwd=ROOT / makefile.rpartition("/")[0],
                capture_output=True,
                check=True,
            )
            layers[layer] = str(out / "python")
        from taskrun.local.template import Stack

        functions = {spec.code_uri.name: spec for spec in Stack(ROOT / "template.yaml", "us-east-1").functions()}

        def timed(target: str, folder: str, added: list[str]) -> float:
            env = {
                "PYTHONPATH": os.pathsep.join([folder, *added, layers["CoreLayer"]]),
                "TASKRUN_TASK_DIRS": str(ROOT / "tasks"),
                "POWERTOOLS_TRACE_DISABLED": "true",
                "AWS_DEFAULT_REGION": "us-east-1",
                "PATH": os.environ["PATH"],
            }
            probe = [python, "-S", "-B", "-c", IMPORT_PROBE, target]
            return float(subprocess.run(probe, capture_output=True, text=True, check=True, env=env).stdout.split()[0])

        samples: dict[str, list[float]] = collections.defaultdict(list)
        for _ in range(repeats):  # interleaved, as the other cold figures are
            samples["boto3"].append(timed("boto3", str(ROOT), []))
            for name, spec in sorted(functions.items()):
                added = [layers[layer] for layer in spec.layers]
                samples[name].append(timed(str(spec.code_uri / "app.py"), str(spec.code_uri), added))
    boto3_ms = statistics.median(samples.pop("boto3"))
    handlers = {name: statistics.median(values) for name, values in samples.items()}
    table(
        f"Cold start as Lambda loads it: handler import from the built layers, {Path(python).name} -S -B, "
        f"median of {repeats} (bare boto3 from the layer: {boto3_ms:.0f} ms)",
        ["function", "import ms", "x boto3"],
        [[name, f"{ms:.0f}", f"{ms / boto3_ms:.2f}"] for name, ms in handlers.items()],
    )
    return {"boto3_ms": boto3_ms, "handlers_ms": handlers, "python": python}


# ------------------------------------------------------------------------------ start


def start_to_first_run(repeats: int) -> dict[str, Any]:
    """`taskrun local` started as a person starts it (its own process, a fresh state folder),
    timed from the spawn to its health answering and to its first run answered succeeded."""
    import socket

    import httpx  # here, not at the top: see the note on the stack's import

    taskrun = str(Path(sys.executable).with_name("taskrun"))
    health_s, first_run_s = [], []
    for _ in range(repeats):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        with tempfile.TemporaryDirectory() as data:
            env = {**os.environ, "TASKRUN_API_KEY": KEY}
            began = time.perf_counter()
            process = subprocess.Popen(
                [taskrun, "local", "--port", str(port), "--data", data],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                healthy = None
                while time.perf_counter() - began < 60:
                    try:
                        if healthy is None and httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                            healthy = time.perf_counter() - began
                        answer = httpx.post(
                            f"{url}/v1/runs", json={**NOOP, "wait": True}, headers={"X-API-KEY": KEY}, timeout=30
                        )
                        ended = time.perf_counter() - began
                        run = answer.json() if answer.status_code in (200, 201) else {"status": answer.status_code}
                        OUTCOMES.add("start", run)
                        if run.get("status") == "succeeded":
                            health_s.append(healthy or ended)
                            first_run_s.append(ended)
                        break
                    except httpx.TransportError:
                        time.sleep(0.05)
                else:
                    OUTCOMES.add_status("start", "never answered")
            finally:
                process.kill()
                process.wait(timeout=30)
    figures = {
        "health_s": statistics.median(health_s) if health_s else math.nan,
        "first_run_s": statistics.median(first_run_s) if first_run_s else math.nan,
    }
    table(
        f"Start: `taskrun local` to its first answers, median of {repeats} (a fresh state folder each)",
        ["to health", "to the first run succeeded", "runs"],
        [[f"{figures['health_s']:.2f} s", f"{figures['first_run_s']:.2f} s", OUTCOMES.of("start")]],
    )
    return figures


# ------------------------------------------------------------------------------ write units


class WriteMeter:
    """DynamoDB write units as AWS bills them, from each write's item before and after (the
    emulator's own items, in this process): the table a unit per KB of the larger of the
    two; each index a unit where the item enters or leaves it, two where its key there
    changes (a delete and a put), one where an attribute it projects changes, none where
    the write touches nothing it holds; a failed conditional write one unit."""

    def __init__(self) -> None:
        self.units: collections.Counter[str] = collections.Counter()  # "<table> table" / "<table> <index>"
        self._lock = threading.Lock()
        self.on = False  # metering reads each item before and after a write: only while a cost is measured

    def install(self) -> Callable[[], None]:
        import inspect

        from moto.dynamodb.models import DynamoDBBackend
        from moto.dynamodb.models.dynamo_type import DynamoType

        originals = {name: getattr(DynamoDBBackend, name) for name in ("put_item", "update_item", "delete_item")}
        meter = self

        def metered(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
            signature = inspect.signature(original)

            def operation(backend: Any, *args: Any, **kwargs: Any) -> Any:
                if not meter.on:
                    return original(backend, *args, **kwargs)
                bound = signature.bind(backend, *args, **kwargs).arguments
                table = backend.get_table(bound["table_name"])
                key = bound.get("key") or bound["item_attrs"]
                hash_key = DynamoType(key[table.hash_key_attr])
                range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
                before = table.get_item(hash_key, range_key)
                before_attrs = dict(before.to_json()["Attributes"]) if before is not None else None
                try:
                    answer = original(backend, *args, **kwargs)
                except Exception:
                    meter.add(table, None, None, failed=True)
                    raise
                after = table.get_item(hash_key, range_key)
                meter.add(table, before_attrs, dict(after.to_json()["Attributes"]) if after is not None else None)
                return answer

            return operation

        for name, original in originals.items():
            setattr(DynamoDBBackend, name, metered(name, original))

        def undo() -> None:
            for name, original in originals.items():
                setattr(DynamoDBBackend, name, original)

        return undo

    def add(
        self, table: Any, before: dict[str, Any] | None, after: dict[str, Any] | None, failed: bool = False
    ) -> None:
        found: collections.Counter[str] = collections.Counter()
        if failed:
            found[f"{table.name} table"] += 1
        else:
            size = max(len(json.dumps(item)) for item in (before, after) if item is not None)
            found[f"{table.name} table"] += max(1, math.ceil(size / 1024))
            table_keys = [table.hash_key_attr, *([table.range_key_attr] if table.range_key_attr else [])]
            for index in table.global_indexes:
                keys = [part["AttributeName"] for part in index.schema]
                inside = [item is not None and all(k in item for k in keys) for item in (before, after)]
                projection = index.projection or {"ProjectionType": "ALL"}
                if projection["ProjectionType"] == "ALL":
                    held = None  # every attribute
                else:
                    held = {*keys, *table_keys, *projection.get("NonKeyAttributes", [])}

                def view(item: dict[str, Any], held: set[str] | None = held) -> dict[str, Any]:
                    return item if held is None else {k: v for k, v in item.items() if k in held}

                if inside == [True, True]:
                    assert before is not None and after is not None
                    if any(before[k] != after[k] for k in keys):
                        found[f"{table.name} {index.name}"] += 2
                    elif view(before) != view(after):
                        found[f"{table.name} {index.name}"] += 1
                elif any(inside):
                    found[f"{table.name} {index.name}"] += 1
        with self._lock:
            self.units.update(found)

    def reset(self) -> None:
        with self._lock:
            self.units.clear()


# ------------------------------------------------------------------------------ the stack


class Bench:
    def __init__(self, extra_tasks: Path, idle_seconds: float | None = None) -> None:
        import httpx  # here, not at the top: see the note on the stack's import

        self.calls_path = Path(tempfile.mkdtemp(prefix="taskrun-bench-")) / "aws-calls.log"
        # The key's usage-plan throttle (50 a second by default) and the stage's (100) would be
        # what the throughput scenario measures (a run is two requests): raised, as an operator
        # raises KeyThrottlingRateLimit and ThrottlingRateLimit.
        for setting in (
            "TASKRUN_KEY_RATE_LIMIT",
            "TASKRUN_KEY_BURST_LIMIT",
            "TASKRUN_STAGE_RATE_LIMIT",
            "TASKRUN_STAGE_BURST_LIMIT",
        ):
            os.environ.setdefault(setting, "100000")
        self.writes = WriteMeter()
        self.unmeter = self.writes.install()  # before the stack's own wrapping, so inside its lock
        from taskrun.local.stack import LocalStack

        self.stack = LocalStack(
            root=ROOT,
            api_key=KEY,
            extra_task_dirs=[extra_tasks],
            settings_overrides={CALL_LOG: str(self.calls_path)},
            idle_seconds=idle_seconds,
        )
        self.stack.start()
        gc.freeze()  # as `taskrun local` does after its start: no collection walks the stack's models again
        server = self.stack.serve("127.0.0.1", 0, log=False)
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self.invocations: list[tuple[str, float]] = []
        runtime = self.stack.emulator.runtime
        original = runtime.invoke_text

        def counted(
            name_or_arn: str, event_text: str, wait_until: float | None = None, version: str | None = None
        ) -> str:
            began = time.perf_counter()
            try:
                return original(name_or_arn, event_text, wait_until, version)
            finally:
                self.invocations.append((runtime.function_name(name_or_arn), time.perf_counter() - began))

        runtime.invoke_text = counted  # type: ignore[method-assign]
        from taskrun.local.template import Stack

        template = Stack(ROOT / "template.yaml", "us-east-1")
        self.memory = {spec.logical_id: spec.memory for spec in template.functions()}
        self.http = httpx.Client(base_url=self.url, headers={"X-API-KEY": KEY}, timeout=120)
        self.api_requests = 0

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        self.api_requests += 1
        answer = self.http.request(method, path, **kwargs)
        answer.raise_for_status()
        return answer.json()

    def stop(self) -> None:
        self.http.close()
        self.stack.stop()
        self.unmeter()

    def calls_made(self) -> list[str]:
        """The AWS requests the functions made (not the local stack's own loops)."""
        return [line for line in self.calls_path.read_text().splitlines() if not line.startswith("- ")]

    def quiet(self, seconds: float = 1.5) -> None:
        """Let what follows a run's end (stream, notifier) finish before counting."""
        time.sleep(seconds)

    def measure(self, name: str, scenario: Callable[[], list[dict[str, Any]]], runs: int) -> dict[str, Any]:
        """AWS requests and billed units per run of a scenario (made `runs` times), each run's
        outcome counted."""
        self.quiet()
        self.calls_path.write_text("")
        self.invocations.clear()
        self.writes.reset()
        self.writes.on = True
        self.api_requests = 0
        run_ids: list[str] = []
        try:
            for _ in range(runs):
                for run in scenario():
                    OUTCOMES.add(name, run)
                    run_ids.append(run["run_id"])
            self.quiet()
        finally:
            self.writes.on = False
        calls = collections.Counter(tuple(line.split(" ")[1:]) for line in self.calls_made())
        invocations = list(self.invocations)
        write_units = collections.Counter(self.writes.units)
        transitions = 0
        for run_id in run_ids:
            run = self.request("GET", f"/v1/runs/{run_id}")
            if run["task_type"] == "flow":
                transitions += len(self.request("GET", f"/v1/runs/{run_id}/history", params={"limit": 500})["steps"])
        self.api_requests -= len(run_ids) + sum(1 for _ in run_ids if transitions)  # the reads just above
        units = self.billed(calls, invocations, write_units, runs)
        units["sfn_transitions"] = transitions / runs
        units["api_requests"] = self.api_requests / runs
        dollars = {
            "API Gateway": units["api_requests"] * PRICE["api_request"],
            "Lambda": units["lambda_requests"] * PRICE["lambda_request"]
            + units["lambda_gb_s"] * PRICE["lambda_gb_second"],
            "DynamoDB": units["write_units"] * PRICE["dynamodb_write_unit"]
            + units["read_units"] * PRICE["dynamodb_read_unit"],
            "Step Functions": units["sfn_transitions"] * PRICE["sfn_transition"],
            "S3 and SQS": units["s3_puts"] * PRICE["s3_put"]
            + units["s3_gets"] * PRICE["s3_get"]
            + units["sqs_requests"] * PRICE["sqs_request"],
        }
        return {
            "calls_per_run": {" ".join(key).strip(): count / runs for key, count in sorted(calls.items())},
            "write_units_per_run": {where: count / runs for where, count in sorted(write_units.items())},
            "units_per_run": units,
            "dollars_per_million": {name: value * 1e6 for name, value in dollars.items()},
            "total_per_million": sum(dollars.values()) * 1e6,
        }

    def billed(
        self,
        calls: collections.Counter[tuple[str, ...]],
        invocations: list[tuple[str, float]],
        write_units: collections.Counter[str],
        runs: int,
    ) -> dict[str, float]:
        """Units from the counted requests; DynamoDB writes as the meter found them, a read
        one unit (strongly consistent, items under 4 KB), a batch read half a unit a key
        (eventually consistent)."""
        read_units = 0.0
        for key, count in calls.items():
            if key[0] == "dynamodb" and key[1] in READS:
                read_units += count * (0.5 * int(key[3]) if len(key) > 3 else 1.0)
        gb_s = sum(seconds * self.memory.get(name, 512) / 1024 for name, seconds in invocations)
        return {
            "lambda_requests": len(invocations) / runs,
            "lambda_gb_s": gb_s / runs,
            "write_units": sum(write_units.values()) / runs,
            "read_units": read_units / runs,
            "s3_puts": sum(c for k, c in calls.items() if k[0] == "s3" and k[1] in ("PutObject",)) / runs,
            "s3_gets": sum(c for k, c in calls.items() if k[0] == "s3" and k[1] in ("GetObject", "ListObjectsV2"))
            / runs,
            "sqs_requests": sum(c for k, c in calls.items() if k[0] == "sqs") / runs,
        }


# ------------------------------------------------------------------------------ 2. requests and cost


def costs(bench: Bench, runs: int) -> dict[str, Any]:
    def waited_script() -> list[dict[str, Any]]:
        return [bench.request("POST", "/v1/runs", json={**NOOP, "wait": True})]

    def async_and_get() -> list[dict[str, Any]]:
        run_id = bench.request("POST", "/v1/runs", json=NOOP)["run_id"]
        return [bench.request("GET", f"/v1/runs/{run_id}", params={"wait": "true", "wait_timeout": 20})]

    def flow(task_id: str, arguments: dict[str, Any]) -> Callable[[], list[dict[str, Any]]]:
        return lambda: [
            bench.request("POST", "/v1/runs", json={"task_id": task_id, "arguments": arguments, "wait": True})
        ]

    scenarios = {
        "script, waited": (waited_script, runs),
        "script, async + GET": (async_and_get, runs),
        "flow examples/order": (flow("examples/order", {"order_id": "A-1", "quantity": 2}), max(2, runs // 5)),
        "flow examples/batch (3 items)": (flow("examples/batch", {"numbers": [1, 2, 3]}), max(2, runs // 5)),
        "flow examples/delay (0 s)": (flow("examples/delay", {"seconds": 0, "name": "x"}), max(2, runs // 5)),
    }
    found = {name: bench.measure(name, scenario, count) for name, (scenario, count) in scenarios.items()}
    rows = []
    for name, figures in found.items():
        units = figures["units_per_run"]
        money = figures["dollars_per_million"]
        rows.append(
            [
                name,
                f"{units['api_requests']:.1f}",
                f"{units['lambda_requests']:.1f}",
                f"{units['write_units']:.1f}",
                f"{units['read_units']:.1f}",
                f"{units['sfn_transitions']:.0f}",
                *(f"{value:.2f}" for value in money.values()),
                f"{figures['total_per_million']:.2f}",
                OUTCOMES.of(name),
            ]
        )
    table(
        "Billed units per run and dollars per million runs (list prices; Lambda GB-s as measured locally)",
        [
            "scenario",
            "API req",
            "Lambda inv",
            "DDB WU",
            "DDB RU",
            "SFN trans",
            *next(iter(found.values()))["dollars_per_million"],
            "total $/M",
            "runs",
        ],
        rows,
    )
    for name, figures in found.items():
        print(f"\n{name}: AWS requests per run")
        for call, count in figures["calls_per_run"].items():
            print(f"  {count:6.2f}  {call}")
        print(f"{name}: DynamoDB write units per run, by table and index")
        for where, count in figures["write_units_per_run"].items():
            print(f"  {count:6.2f}  {where}")
    return found


# ------------------------------------------------------------------------------ 3. wait lag


def wait_lag(bench: Bench, runs: int) -> dict[str, Any]:
    """Lag from a run's end to the waiting call's answer, for a task whose timeout fits the
    wait (run while the request waits) and one whose timeout does not (the wait polls)."""
    import httpx  # here, not at the top: see the note on the stack's import

    found: dict[str, Any] = {}
    rows = []
    for label, task_id, argument in (
        ("timeout fits the wait (bench/nap, 10 s)", "bench/nap", "seconds"),
        ("timeout past the wait (examples/sleep, 120 s)", "examples/sleep", "seconds"),
    ):
        lags: list[float] = []
        bench.calls_path.write_text("")
        waited = 0.0

        def one(
            index: int, task_id: str = task_id, argument: str = argument, lags: list[float] = lags, label: str = label
        ) -> float:
            seconds = (index % 8) * 0.25  # 0 to 1.75 s
            with httpx.Client(base_url=bench.url, headers={"X-API-KEY": KEY}, timeout=60) as http:
                body = {"task_id": task_id, "arguments": {argument: seconds}, "wait": True}
                began = time.perf_counter()
                answer = http.post("/v1/runs", json=body)
                answered = datetime.now(UTC)
                spent = time.perf_counter() - began
            run = answer.json()

            def slept(run: dict[str, Any], seconds: float = seconds) -> str | None:
                if run["duration_ms"] < seconds * 1000:
                    return f"ended after {run['duration_ms']} ms, not sleeping its {seconds} s"
                return None

            OUTCOMES.add(label, run, slept)
            if run.get("ended_at"):
                lags.append((answered - _at(run["ended_at"])).total_seconds() * 1000)
            return spent

        with ThreadPoolExecutor(max_workers=4) as pool:
            waited = sum(pool.map(one, range(runs)))
        reads = sum(1 for line in bench.calls_made() if " dynamodb GetItem " in line and "Runs" in line)
        per_second = reads / max(0.001, waited)
        found[task_id] = {
            "p50_ms": statistics.median(lags),
            "p90_ms": percentile(lags, 0.9),
            "p99_ms": percentile(lags, 0.99),
            "run_reads_per_waiter_second": per_second,
        }
        rows.append(
            [
                label,
                f"{statistics.median(lags):.0f}",
                f"{percentile(lags, 0.9):.0f}",
                f"{percentile(lags, 0.99):.0f}",
                f"{per_second:.1f}",
                OUTCOMES.of(label),
            ]
        )
    table(
        f"Sync-wait lag: run ended -> answer, {runs} waited runs of 0-1.75 s each, 4 at a time",
        ["task", "p50 ms", "p90 ms", "p99 ms", "run reads / waiter-second", "runs"],
        rows,
    )
    return found


# ------------------------------------------------------------------------------ no-op latency


def noop_latency(bench: Bench, runs: int) -> dict[str, float]:
    """A no-op script run, waited for, one after another from one client: from the HTTP
    request sent to its result in hand (warm sandboxes: the warm-up runs came first)."""
    took = []
    for _ in range(runs):
        began = time.perf_counter()
        run = bench.request("POST", "/v1/runs", json={**NOOP, "wait": True})
        took.append((time.perf_counter() - began) * 1000)
        OUTCOMES.add("no-op latency", run)
    figures = {"p50_ms": statistics.median(took), "p90_ms": percentile(took, 0.9)}
    table(
        f"A waited no-op run, HTTP request to result, one client, {runs} runs",
        ["p50", "p90", "runs"],
        [[f"{figures['p50_ms']:.1f} ms", f"{figures['p90_ms']:.1f} ms", OUTCOMES.of("no-op latency")]],
    )
    return figures


# ------------------------------------------------------------------------------ 4. throughput


def drive(url: str, clients: int, count: int) -> tuple[float, float, list[str]]:
    """In a process of its own, as clients are: start `count` no-op runs from `clients`
    threads, then wait for each; answer the seconds to start them all, to see them all
    ended, and their statuses."""
    import httpx  # here, not at the top: see the note on the stack's import

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    with (
        httpx.Client(base_url=url, headers={"X-API-KEY": KEY}, timeout=120, limits=limits) as http,
        ThreadPoolExecutor(max_workers=clients) as pool,
    ):

        def refused(answer: httpx.Response) -> str:  # counted by its status and title
            return f"refused {answer.status_code} {answer.json().get('title', '')}".strip()

        def start(_: int) -> str:
            answer = http.post("/v1/runs", json=NOOP)
            return str(answer.json()["run_id"]) if answer.status_code == 201 else refused(answer)

        def end(started: str) -> str:
            if started.startswith("refused"):
                return started
            answer = http.get(f"/v1/runs/{started}", params=waited)
            return str(answer.json()["status"]) if answer.status_code == 200 else refused(answer)

        began = time.perf_counter()
        run_ids = list(pool.map(start, range(count)))
        started = time.perf_counter() - began
        waited: dict[str, str | int] = {"wait": "true", "wait_timeout": 25}
        statuses = list(pool.map(end, run_ids))
        return started, time.perf_counter() - began, statuses


def sandboxes(bench: Bench) -> dict[int, str]:
    """The stack's live sandboxes: process id, function."""
    pools = bench.stack.emulator.runtime.pools()
    return {pid: name for name, pool in pools.items() for pid in pool.pids()}


def cpu_seconds(bench: Bench) -> dict[str, float]:
    """CPU time so far of the stack's own process and of each function's live sandboxes."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {"stack": sum(os.times()[:2])}
    for pid, name in sandboxes(bench).items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError):
            continue
        used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return used


def throughput(bench: Bench, count: int, client_counts: tuple[int, ...]) -> dict[str, Any]:
    """Runs started and ended a second by 1 to 8 clients, each count after a warm-up round at
    that concurrency (steady state: the sandboxes it needs are up, as on AWS after the first
    burst), with the CPU each run took in the stack's process and in the sandboxes."""
    bench.quiet()
    at_rest, began = cpu_seconds(bench)["stack"], time.perf_counter()
    time.sleep(IDLE_SECONDS)
    idle = (cpu_seconds(bench)["stack"] - at_rest) * 1000 / (time.perf_counter() - began)
    found: dict[str, Any] = {"idle_stack_cpu_ms_per_s": idle}
    rows = []
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as clients_process:
        for clients in client_counts:
            for _ in range(5):  # warm up until no more sandboxes start
                running = sandboxes(bench).keys()
                clients_process.submit(drive, bench.url, clients, 4 * clients).result()
                if sandboxes(bench).keys() == running:
                    break
            before = cpu_seconds(bench)
            started, ended, statuses = clients_process.submit(drive, bench.url, clients, count).result()
            after = cpu_seconds(bench)
            label = f"throughput, {clients} clients"
            for status in statuses:
                OUTCOMES.add_status(label, status)
            used = {name: (after[name] - before.get(name, 0.0)) * 1000 / count for name in after}
            in_sandboxes = sum(ms for name, ms in used.items() if name != "stack")
            found[str(clients)] = {
                "started_per_s": count / started,
                "ended_per_s": count / ended,
                "cpu_ms_per_run": used,
            }
            row = [clients, count, f"{count / started:.1f}", f"{count / ended:.1f}"]
            rows.append([*row, f"{used['stack']:.0f}", f"{in_sandboxes:.0f}", OUTCOMES.of(label)])
    table(
        f"Throughput of a no-op script run ({os.cpu_count()} cores; clients in a process of their own)",
        ["clients", "runs", "started/s", "ended/s", "CPU ms/run: stack process", "sandboxes", "runs"],
        rows,
    )
    print(f"the stack's process with nothing to do: {idle:.0f} ms of CPU a second (its pollers)")
    return found


# ------------------------------------------------------------------------------ 5. scale


def scale(bench: Bench) -> dict[str, Any]:
    import boto3

    dynamodb = boto3.resource("dynamodb", endpoint_url=bench.stack.emulator.endpoint, region_name="us-east-1")
    runs_table = next(t for t in dynamodb.tables.all() if "RunsTable" in t.name)

    def timed_lists() -> dict[str, float]:
        figures = {}
        for name, params in (
            ("newest 20", {"limit": 20}),
            ("status=cancelled (rare)", {"limit": 20, "status": "cancelled"}),
        ):
            bench.calls_path.write_text("")
            timings = []
            for _ in range(5):
                began = time.perf_counter()
                bench.request("GET", "/v1/runs", params=params)
                timings.append((time.perf_counter() - began) * 1000)
            queries = sum(1 for line in bench.calls_made() if " dynamodb Query " in line)
            figures[name] = statistics.median(timings)
            figures[name + " queries"] = queries / 5
        return figures

    before = timed_lists()
    count = runs_table.item_count if hasattr(runs_table, "item_count") else 0
    from taskrun.ids import new_run_id
    from taskrun.models import Run, RunStatus, utcnow
    from taskrun.runs.items import to_item

    now = utcnow()
    with runs_table.batch_writer() as batch:
        for _ in range(10_000):
            seeded = Run(
                run_id=new_run_id(),
                task_id="examples/echo",
                revision="1",
                status=RunStatus.SUCCEEDED,
                arguments={"message": "seed"},
                result={"message": "seed"},
                created_at=now,
                started_at=now,
                ended_at=now,
            )
            batch.put_item(Item=to_item(seeded))
    after = timed_lists()
    rows = [
        [
            name,
            f"{before[name]:.0f}",
            f"{after[name]:.0f}",
            f"{before[name + ' queries']:.0f} / {after[name + ' queries']:.0f}",
        ]
        for name in ("newest 20", "status=cancelled (rare)")
    ]
    table(
        f"GET /v1/runs with few runs and with 10,000 more (had {count})",
        ["list", "ms (few)", "ms (10k)", "queries"],
        rows,
    )
    return {"few": before, "ten_thousand": after}


# ------------------------------------------------------------------------------ 6. a 40-step flow


def chain(bench: Bench, repeats: int) -> dict[str, Any]:
    """A 40-step flow's time a step, end to end, then taken apart from its history: the
    worker's invocation (in its sandbox), the rest of each step (Step Functions calling
    Lambda), the time between steps, the flow's start (run recorded -> first step) and end
    (last step -> run ended), and the waiting call's lag (run ended -> answer)."""
    label = f"flow bench/chain ({CHAIN_STEPS} steps)"
    parts: dict[str, list[float]] = collections.defaultdict(list)
    for _ in range(repeats):
        bench.quiet()
        bench.invocations.clear()
        body = {"task_id": "bench/chain", "arguments": {"n": 0}, "wait": True, "wait_timeout": 120}
        run = bench.request("POST", "/v1/runs", json=body)
        answered = datetime.now(UTC)

        def counted(run: dict[str, Any]) -> str | None:
            return None if run["result"] == {"n": CHAIN_STEPS} else f"answered {run['result']}"

        OUTCOMES.add(label, run, counted)
        if run["status"] != "succeeded":
            continue
        steps = bench.request("GET", f"/v1/runs/{run['run_id']}/history", params={"limit": 500})["steps"]
        steps = [step for step in steps if step["type"] == "Task"]
        invoked = statistics.mean(
            [seconds * 1000 for name, seconds in bench.invocations if name == "WorkerFunction"][-CHAIN_STEPS:]
        )
        in_steps = statistics.mean(_ms(step["started_at"], step["ended_at"]) for step in steps)
        between = [_ms(earlier["ended_at"], later["started_at"]) for earlier, later in itertools.pairwise(steps)]
        parts["end to end, a step"].append(run["duration_ms"] / CHAIN_STEPS)
        parts["worker invocation"].append(invoked)
        parts["rest of the step"].append(in_steps - invoked)
        parts["between steps"].append(statistics.mean(between))
        parts["flow start (once)"].append(_ms(run["started_at"] or run["created_at"], steps[0]["started_at"]))
        parts["flow end (once)"].append(_ms(steps[-1]["ended_at"], run["ended_at"]))
        parts["answer lag (once)"].append((answered - _at(run["ended_at"])).total_seconds() * 1000)
    figures = {name: statistics.median(values) for name, values in parts.items()}
    table(
        f"A {CHAIN_STEPS}-step sequential flow: ms a step, and its parts (median of {repeats} runs: "
        f"{OUTCOMES.of(label)})",
        ["part", "ms"],
        [[name, f"{ms:.1f}"] for name, ms in figures.items()],
    )
    return {"ms_per_step": figures.get("end to end, a step"), "parts_ms": figures}


def chain_code(bench: Bench, repeats: int, asl: dict[str, Any]) -> dict[str, Any]:
    """The same 40 steps as a code-first flow (Lambda durable functions): ms a step end to
    end and as its history times them, the flow function's invocations, and what a
    million runs cost on AWS's list prices beside the ASL chain (state transitions and the
    worker's invocations there; durable operations and the flow function's invocations
    here; DynamoDB and API Gateway, the same for both, left out)."""
    label = f"flow bench/chain_code ({CHAIN_STEPS} steps, code-first)"
    parts: dict[str, list[float]] = collections.defaultdict(list)
    invocations: list[int] = []
    operations: list[int] = []
    for _ in range(repeats):
        bench.quiet()
        bench.invocations.clear()
        body = {"task_id": "bench/chain_code", "arguments": {"steps": CHAIN_STEPS}, "wait": True, "wait_timeout": 120}
        run = bench.request("POST", "/v1/runs", json=body)

        def counted(run: dict[str, Any]) -> str | None:
            return None if run["result"] == {"n": CHAIN_STEPS} else f"answered {run['result']}"

        OUTCOMES.add(label, run, counted)
        if run["status"] != "succeeded":
            continue
        steps = bench.request("GET", f"/v1/runs/{run['run_id']}/history", params={"limit": 500})["steps"]
        between = [_ms(earlier["ended_at"], later["started_at"]) for earlier, later in itertools.pairwise(steps)]
        parts["end to end, a step"].append(run["duration_ms"] / CHAIN_STEPS)
        parts["a step, as its history times it"].append(
            statistics.mean(_ms(step["started_at"], step["ended_at"]) for step in steps)
        )
        parts["between steps"].append(statistics.mean(between))
        parts["flow start (once)"].append(_ms(run["started_at"] or run["created_at"], steps[0]["started_at"]))
        parts["flow end (once)"].append(_ms(steps[-1]["ended_at"], run["ended_at"]))
        invocations.append(sum(1 for name, _ in bench.invocations if name == "FlowFunction"))
        operations.append(len(steps) + 1)  # its steps and the execution's own start
    figures = {name: statistics.median(values) for name, values in parts.items()}
    flow_invocations = statistics.median(invocations) if invocations else 0
    durable_ops = statistics.median(operations) if operations else 0
    code_cost = durable_ops * PRICE["durable_operation"] + flow_invocations * PRICE["lambda_request"]
    asl_cost = (CHAIN_STEPS + 2) * PRICE["sfn_transition"] + CHAIN_STEPS * PRICE["lambda_request"]
    rows = [
        [name, f"{ms:.1f}", f"{asl['parts_ms'][name]:.1f}" if name in asl["parts_ms"] else "-"]
        for name, ms in figures.items()
    ]
    rows.append(["flow function invocations", f"{flow_invocations:g}", f"{CHAIN_STEPS} (the worker's)"])
    rows.append(["$ a million runs (engine + invocations)", f"{code_cost * 1e6:,.0f}", f"{asl_cost * 1e6:,.0f}"])
    table(
        f"A {CHAIN_STEPS}-step flow written as code (median of {repeats} runs: {OUTCOMES.of(label)}), beside ASL",
        ["part", "code-first", "ASL"],
        rows,
    )
    return {
        "ms_per_step": figures.get("end to end, a step"),
        "parts_ms": figures,
        "flow_function_invocations": flow_invocations,
        "durable_operations": durable_ops,
        "dollars_per_million_runs": {"code_first": code_cost * 1e6, "asl": asl_cost * 1e6},
    }


# ------------------------------------------------------------------------------ 7. memory


def stack_processes() -> list[int]:
    """This process and every process under it: the emulator's, the sandboxes and their children."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found = [os.getpid()]
    for pid in found:
        found += [child for child, parent in parents.items() if parent == pid]
    return found


def footprint() -> dict[str, float]:
    """Processes, and their resident (RSS) and proportional (PSS, shared pages split) memory, MB."""
    rss = pss = 0.0
    processes = 0
    for pid in stack_processes():
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        fields = {line.split(":")[0]: float(line.split()[1]) for line in lines[1:] if line.endswith("kB")}
        processes += 1
        rss += fields.get("Rss", 0.0) / 1024
        pss += fields.get("Pss", 0.0) / 1024
    return {"processes": processes, "rss_mb": rss, "pss_mb": pss}


def after_idle(bench: Bench, keep_idle: bool, idle_seconds: float) -> dict[str, float]:
    """The footprint once sandboxes idle `idle_seconds` are retired (or, `keep_idle`, after as
    long with none retired, as before the stack retired them)."""
    runtime = bench.stack.emulator.runtime
    kept = runtime.idle_seconds
    if not keep_idle:
        runtime.idle_seconds = idle_seconds
    deadline = time.monotonic() + idle_seconds * 3
    time.sleep(idle_seconds)
    while not keep_idle and sandboxes(bench) and time.monotonic() < deadline:
        time.sleep(0.5)
    figures = footprint()
    runtime.idle_seconds = kept
    return figures


def memory_table(phases: dict[str, dict[str, float]], keep_idle: bool) -> None:
    table(
        "The stack's memory: every process it runs" + (" (idle sandboxes kept: --keep-idle)" if keep_idle else ""),
        ["when", "processes", "RSS MB", "PSS MB"],
        [[name, f"{f['processes']:.0f}", f"{f['rss_mb']:.0f}", f"{f['pss_mb']:.0f}"] for name, f in phases.items()],
    )


# ------------------------------------------------------------------------------ the goals of issue 34

# Each figure of issue 34 ("Performance, round 2") as the issue measured it before its work
# began (this kind of machine, 2 cores), and its goal; `lower` says which way is better.
ISSUE_34: list[tuple[str, tuple[str, ...], float | None, float, bool, str]] = [
    # (figure, how it is read from the results, before, goal, lower is better, unit)
    ("no-op call, HTTP -> result, p50", ("noop_latency", "p50_ms"), 32.8, 15.0, True, "ms"),
    ("40 sequential ASL steps, a step", ("flow_40_steps", "ms_per_step"), 13.5, 6.0, True, "ms"),
    ("runs ended a second, 8 clients", ("throughput", "8", "ended_per_s"), 35.0, 100.0, False, "/s"),
    ("CPU a no-op run, all processes, 8 clients", ("throughput", "8", "cpu_ms_per_run"), 36.0, 12.0, True, "ms"),
    ("start -> first run succeeded", ("start", "first_run_s"), 4.3, 2.5, True, "s"),
    ("memory after the burst, RSS", ("memory", "after the throughput burst", "rss_mb"), 2233.0, 800.0, True, "MB"),
    # not a figure of the issue's: shared pages counted once, split between the processes sharing them
    ("memory after the burst, PSS", ("memory", "after the throughput burst", "pss_mb"), None, 800.0, True, "MB"),
    ("worst handler import, x boto3", ("cold_start",), 6.9, 1.5, True, "x"),
    ("a million waited runs on AWS", ("cost", "script, waited", "total_per_million"), 9.16, 8.0, True, "$"),
]


def _figure(results: dict[str, Any], path: tuple[str, ...]) -> float | None:
    """One figure of a run's results (None where that run did not measure it)."""
    if path == ("cold_start",):
        cold = results.get("cold_start")
        return max(cold["handlers_ms"].values()) / cold["boto3_ms"] if cold else None
    value: Any = results
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    if isinstance(value, dict):  # CPU a run: the stack's process and every function's sandboxes
        return float(sum(value.values()))
    return float(value)


def goals_table(results: dict[str, Any], against: dict[str, Any] | None) -> None:
    """Each figure of issue 34 beside the figure before the issue (and, given one, another
    run's on this machine), as ratios, and whether its goal is met."""
    rows = []
    for name, path, before, goal, lower, unit in ISSUE_34:
        now = _figure(results, path)
        if now is None:
            continue
        met = now <= goal if lower else now >= goal
        was, ratio = (f"{before:g} {unit}", f"{now / before:.2f}") if before is not None else ("", "")
        row = [name, was, f"{now:.2f} {unit}", ratio, f"{goal:g} {unit}"]
        if against is not None:
            other = _figure(against, path)
            row[2:2] = [f"{other:.2f} {unit}" if other is not None else "", f"{now / other:.2f}" if other else ""]
        rows.append([*row, "met" if met else "not met"])
    for key, where in (("cold_start", "here"), ("cold_start_layers", "from the built layers, as on Lambda")):
        cold = results.get(key)
        if cold:
            within = sum(ms <= 1.5 * cold["boto3_ms"] for ms in cold["handlers_ms"].values())
            print(f"\nhandler imports within 1.5x boto3 ({where}): {within} of {len(cold['handlers_ms'])}")
    header = ["figure (issue 34)", "before the issue", "now", "now / before", "goal", ""]
    if against is not None:
        header[2:2] = ["against", "now / against"]
    table("The figures of issue 34, before it and now", header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats (a minute or two)")
    parser.add_argument("--json", default=str(ROOT / "bench" / "results.json"), help="where to save the figures")
    parser.add_argument(
        "--keep-idle", action="store_true", help="never retire idle sandboxes (the stack's memory as it was)"
    )
    parser.add_argument("--idle-seconds", type=float, default=10.0, help="the idle time for the memory's last figure")
    parser.add_argument(
        "--cold-only", action="store_true", help="the handlers' cold imports and the stack's start alone"
    )
    parser.add_argument(
        "--against",
        metavar="RESULTS_JSON",
        help="another run's saved figures (this machine, another commit): shown beside these, as ratios",
    )
    args = parser.parse_args()
    quick = args.quick
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    results["cold_start"] = cold_starts(1 if quick else 5)
    results["cold_start_layers"] = layer_cold_starts(1 if quick else 3)
    results["start"] = start_to_first_run(1 if quick else 3)
    if args.cold_only:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        return
    with tempfile.TemporaryDirectory() as folder:
        extra = Path(folder)
        (extra / "bench_chain.py").write_text(CHAIN_MODULE)
        (extra / "chain.asl.json").write_text(json.dumps(chain_definition(CHAIN_STEPS)))
        bench = Bench(extra, idle_seconds=86_399 if args.keep_idle else None)
        memory: dict[str, dict[str, float]] = {}
        try:
            bench.quiet(3)
            memory["at rest, started"] = footprint()
            for _ in range(20):  # warm the sandboxes
                OUTCOMES.add("warm-up", bench.request("POST", "/v1/runs", json={**NOOP, "wait": True}))
            results["cost"] = costs(bench, 5 if quick else 20)
            results["noop_latency"] = noop_latency(bench, 20 if quick else 100)
            results["wait_lag"] = wait_lag(bench, 16 if quick else 64)
            results["throughput"] = throughput(bench, 40 if quick else 200, (1, 8) if quick else (1, 2, 4, 8))
            bench.quiet()
            memory["after the throughput burst"] = footprint()
            results["flow_40_steps"] = chain(bench, 1 if quick else 3)
            results["code_flow_40_steps"] = chain_code(bench, 1 if quick else 3, results["flow_40_steps"])
            results["scale"] = scale(bench)
            memory[f"{args.idle_seconds:g} s idle after"] = after_idle(bench, args.keep_idle, args.idle_seconds)
            memory_table(memory, args.keep_idle)
            results["memory"] = memory
        finally:
            bench.stop()
    goals_table(results, json.loads(Path(args.against).read_text()) if args.against else None)
    table(
        "How each scenario's runs ended",
        ["scenario", "runs"],
        [[name, OUTCOMES.of(name)] for name in OUTCOMES.counts],
    )
    results["outcomes"] = {name: dict(counts) for name, counts in OUTCOMES.counts.items()}
    Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nsaved {args.json}")
    sys.exit(OUTCOMES.verdict())


if __name__ == "__main__":
    main()
