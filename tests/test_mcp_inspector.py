"""A second MCP client that no one here wrote: the MCP Inspector's command-line mode (from the
npm registry, pinned) lists the tools of the local stack's /mcp and calls one, with a key in
a header, as a person setting up an agent host would. Skipped only when npm cannot install it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
CACHE = Path(__file__).resolve().parent.parent / ".cache" / "mcp-inspector-2.12.0"


def inspector() -> Path:
    """The inspector's command, installed once into .cache/ (a failed install leaves nothing)."""
    command = CACHE / "node_modules" / ".bin" / "mcp-inspector"
    if command.exists():
        return command
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: the MCP Inspector cannot be")
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=CACHE.parent))
    installed = subprocess.run(
        [npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund", "--loglevel=error", INSPECTOR],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if installed.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.skip(f"npm could not install {INSPECTOR}: {installed.stderr[-500:]}")
    try:
        staging.rename(CACHE)
    except OSError:  # another run installed it meanwhile
        shutil.rmtree(staging, ignore_errors=True)
    return command


def test_the_mcp_inspector_lists_the_tools_and_calls_one(api: httpx.Client, base_url: str, tmp_path: Path) -> None:
    command = inspector()
    environment = {**os.environ, "MCP_CATALOG_PATH": str(tmp_path / "mcp.json"), "HOME": str(tmp_path)}

    connect = [str(command), "--cli", f"{base_url}/mcp", "--transport", "http"]
    connect += ["--header", f"Authorization: Bearer {API_KEY}"]

    def cli(*arguments: str) -> Any:
        answered = subprocess.run(
            [*connect, *arguments],
            capture_output=True,
            text=True,
            timeout=120,
            env=environment,
        )
        assert answered.returncode == 0, answered.stderr
        return json.loads(answered.stdout)

    listed = cli("--method", "tools/list")
    tools = {tool["name"]: tool for tool in listed["tools"]}
    catalog = {task["task_id"]: task for task in api.get("/v1/tasks").json()["tasks"]}
    assert tools["examples__greet"]["inputSchema"] == catalog["examples/greet"]["parameters"]
    assert tools["examples__math__sum"]["title"] == "examples/math/sum"

    called = cli("--method", "tools/call", "--tool-name", "examples__greet", "--tool-arg", "name=Ada", "times=2")
    assert called["isError"] is False
    assert called["structuredContent"] == {"greeting": "hello Ada hello Ada!"}
    run = api.get(f"/v1/runs/{called['_meta']['taskrun/run_id']}").json()
    assert (run["task_id"], run["triggered_by"], run["arguments"]["times"]) == ("examples/greet", "mcp", 2)
