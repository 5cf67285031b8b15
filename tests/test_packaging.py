"""The layers build as `sam build` builds them (their Makefile targets) for the template's
Lambda, and every function's handler imports with nothing but the built layers and its
own folder, under the template's Python."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from taskrun.local.resources import FunctionSpec
from taskrun.local.template import Stack, load_template
from tests.conftest import API_KEY, ROOT

TEMPLATE = load_template(ROOT / "template.yaml")
GLOBALS = TEMPLATE["Globals"]["Function"]
RUNTIME = GLOBALS["Runtime"]  # python3.13
PYTHON_VERSION = RUNTIME.removeprefix("python")
PLATFORM_OF = {"arm64": "manylinux2014_aarch64", "x86_64": "manylinux2014_x86_64"}
LAMBDA_PLATFORM = PLATFORM_OF[GLOBALS["Architectures"][0]]
THIS_PLATFORM = PLATFORM_OF["arm64" if os.uname().machine in ("aarch64", "arm64") else "x86_64"]
EXTRA_LAYERS = {"McpLayer": "layers/mcp/Makefile"}  # layers a function adds, and how each is built


def core_pins() -> dict[str, str]:
    return pins_of(ROOT / "layers/core/requirements.txt")


def pins_of(requirements: Path) -> dict[str, str]:
    pins = {}
    for line in requirements.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_normal(re.sub(r"\[.*\]", "", name))] = version.strip()
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed(python_dir: Path) -> dict[str, str]:
    found = {}
    for info in python_dir.glob("*.dist-info"):
        name, version = info.name.removesuffix(".dist-info").rsplit("-", 1)
        found[_normal(name)] = version
    return found


def build(layer: str, makefile: Path, out: Path, platform: str) -> Path:
    subprocess.run(
        ["make", "-f", str(makefile), f"build-{layer}", f"PLATFORM={platform}", f"PYTHON={sys.executable}"],
        env={**os.environ, "ARTIFACTS_DIR": str(out)},
        cwd=makefile.parent,
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


def template_python() -> str | None:
    """The template's Python as the layers' Makefiles find it to compile their bytecode (among
    pyenv's versions, or on PATH), or None."""
    asked = subprocess.run(
        ["make", "-s", "-f", str(ROOT / "layers/pip.mk"), "--eval", "found: ; @echo $(PYC_PYTHON)", "found"],
        capture_output=True,
        text=True,
        check=True,
    )
    return asked.stdout.strip() or None


def test_the_makefiles_build_for_the_templates_lambda() -> None:
    makefile = (ROOT / "layers/pip.mk").read_text()
    assert f"PLATFORM ?= {LAMBDA_PLATFORM}\n" in makefile
    assert f"PYTHON_VERSION ?= {PYTHON_VERSION}\n" in makefile
    for layer in ("CoreLayer", "TasksLayer"):
        resource = TEMPLATE["Resources"][layer]
        assert resource["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": GLOBALS["Architectures"][0]}
        assert resource["Properties"]["CompatibleRuntimes"] == [RUNTIME]
        assert resource["Properties"]["CompatibleArchitectures"] == GLOBALS["Architectures"]
    project = (ROOT / "pyproject.toml").read_text()
    for name in ("aws-lambda-powertools", "boto3", "pydantic", "aws-croniter", "tzdata"):
        assert f'"{name}' in project and f'=={core_pins()[name]}"' in project, name


def test_the_core_layer_holds_the_pinned_packages_for_the_lambdas_machine(tmp_path: Path) -> None:
    core = build("CoreLayer", ROOT / "layers/core/Makefile", tmp_path / "core", LAMBDA_PLATFORM) / "python"

    assert installed(core) == core_pins()
    assert (core / "boto3").is_dir() and (core / "taskrun/runs/service.py").is_file()
    assert not (core / "taskrun/local").exists(), "the emulator is not shipped"
    assert not (core / "taskrun/commands.py").exists() and not (core / "taskrun/client.py").exists()
    binaries = [path.name for path in (core / "pydantic_core").glob("*.so")]
    arch = LAMBDA_PLATFORM.rpartition("_")[2] if "aarch64" in LAMBDA_PLATFORM else "x86_64"
    assert binaries and all(f"cpython-{PYTHON_VERSION.replace('.', '')}" in b and arch in b for b in binaries)


def test_the_mcp_layer_holds_its_pins_and_nothing_of_the_cores(tmp_path: Path) -> None:
    mcp = build("McpLayer", ROOT / "layers/mcp/Makefile", tmp_path / "mcp", LAMBDA_PLATFORM) / "python"
    pins = pins_of(ROOT / "layers/mcp/requirements.txt")
    assert installed(mcp) == pins
    assert not set(pins) & set(core_pins())  # a core package is never replaced by another version
    project = (ROOT / "pyproject.toml").read_text()
    for name in ("mcp", "mangum"):
        assert f'"{name}=={pins[name]}"' in project, name


def test_a_task_dependency_is_held_to_the_cores_pins_and_no_requirements_install_nothing(tmp_path: Path) -> None:
    """The tasks Makefile finds the core's pins beside it, as in the repository."""
    shutil.copytree(ROOT / "layers", tmp_path / "layers", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    shutil.copytree(ROOT / "tasks", tmp_path / "tasks", ignore=shutil.ignore_patterns("__pycache__"))

    (tmp_path / "tasks/requirements.txt").write_text("# only a comment\n\n")
    bare = build("TasksLayer", tmp_path / "tasks/Makefile", tmp_path / "bare", LAMBDA_PLATFORM)
    assert not (bare / "python").exists()
    modules = sorted(path.name for path in (ROOT / "tasks").glob("*.py"))
    assert sorted(path.name for path in (bare / "tasks").iterdir() if path.name != "__pycache__") == modules
    if template_python():  # with their bytecode for the template's Python
        tag = f"cpython-{PYTHON_VERSION.replace('.', '')}"
        compiled = sorted(path.name for path in (bare / "tasks/__pycache__").iterdir())
        assert compiled == [name.replace(".py", f".{tag}.pyc") for name in modules]

    (tmp_path / "tasks/requirements.txt").write_text("python-dateutil\n")  # unpinned: the core's pin decides
    with_deps = build("TasksLayer", tmp_path / "tasks/Makefile", tmp_path / "deps", LAMBDA_PLATFORM)
    assert installed(with_deps / "python") == {name: core_pins()[name] for name in ("python-dateutil", "six")}

    (tmp_path / "tasks/requirements.txt").write_text("boto3<1.40\n")  # another boto3 than the core's
    with pytest.raises(subprocess.CalledProcessError) as refused:
        build("TasksLayer", tmp_path / "tasks/Makefile", tmp_path / "conflict", LAMBDA_PLATFORM)
    assert b"boto3" in refused.value.stderr


def test_every_handler_imports_from_the_built_layers_under_the_templates_python(tmp_path: Path) -> None:
    python = template_python()
    if python is None:
        pytest.skip(f"no python{PYTHON_VERSION} on this machine (PATH or pyenv): the import check needs it")
    # built for this machine's processor, so its Python can load the compiled wheels
    core = build("CoreLayer", ROOT / "layers/core/Makefile", tmp_path / "core", THIS_PLATFORM)
    tasks = build("TasksLayer", ROOT / "tasks/Makefile", tmp_path / "tasks", THIS_PLATFORM)
    stack = Stack(ROOT / "template.yaml", "us-east-1")
    # the layers a function adds to the Globals' (the MCP function's), each built once
    added = {layer for function in stack.functions() for layer in function.layers}
    assert added == set(EXTRA_LAYERS), added
    extra = {
        layer: build(layer, ROOT / makefile, tmp_path / layer, THIS_PLATFORM) / "python"
        for layer, makefile in EXTRA_LAYERS.items()
    }

    def import_handler(function: FunctionSpec) -> tuple[str, int, str]:
        module, _, attribute = function.handler.rpartition(".")
        layers = [str(function.code_uri), *(str(extra[layer]) for layer in function.layers), str(core / "python")]
        env = {
            **function.environment,
            "TASKRUN_TASK_DIRS": str(tasks / "tasks"),
            "PYTHONPATH": os.pathsep.join([*layers, str(tasks / "python")]),
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PATH": os.environ["PATH"],
        }
        # and which modules it had to compile from source (Lambda's /opt is read-only: no bytecode
        # shipped is a compile at every cold start)
        check = (
            "import json, importlib._bootstrap_external as loading\n"
            "compiled = []\n"
            "to_code = loading.SourceLoader.source_to_code\n"
            "def recorded(loader, data, path, **options):\n"
            "    compiled.append(str(path))\n"
            "    return to_code(loader, data, path, **options)\n"
            "loading.SourceLoader.source_to_code = recorded\n"
            f"import {module}\n"
            f"print(json.dumps({{'callable': callable({module}.{attribute}), 'compiled': compiled}}))"
        )
        # -S: no site-packages of that Python, only the layers and the function's folder
        # -S: no site-packages of that Python, only the layers and the function's folder; -B: the
        # layers as read-only as on Lambda (no bytecode written beside them)
        done = subprocess.run(
            [python, "-S", "-B", "-c", check], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        return function.logical_id, done.returncode, done.stdout + done.stderr

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(import_handler, stack.functions()))
    assert {logical_id for logical_id, _, _ in results} >= {"WorkerFunction", "StartRunFunction"}
    layer_folders = (str(tmp_path / "core"), *(str(folder) for folder in extra.values()))
    for logical_id, code, output in results:
        assert code == 0, (logical_id, output[-2000:])
        seen = json.loads(output.strip().splitlines()[-1])
        assert seen["callable"] is True, logical_id
        # every module of the layers came from the bytecode built with them
        assert [path for path in seen["compiled"] if path.startswith(layer_folders)] == [], logical_id


def test_the_client_installs_without_the_emulator_and_the_local_extra_brings_it() -> None:
    """What `pip install taskrun` brings (the client and the command) and what `taskrun[local]`
    adds, followed through the installed packages' own requirements."""
    from importlib import metadata

    from packaging.requirements import Requirement

    def brought(name: str, extras: frozenset[str] = frozenset(), seen: set[str] | None = None) -> set[str]:
        seen = set() if seen is None else seen
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            wanted = requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in extras or {""}
            )
            if wanted and _normal(requirement.name) not in seen:
                seen.add(_normal(requirement.name))
                brought(requirement.name, frozenset(requirement.extras), seen)
        return seen

    client = brought("taskrun")
    assert {"httpx", "typer", "pydantic", "boto3"} <= client
    assert not client & {"moto", "flask", "werkzeug", "aws-sam-translator", "flask-cors", "pyyaml"}, client
    assert {"moto", "flask", "aws-sam-translator", "pyyaml"} <= brought("taskrun", frozenset({"local"}))


# the three products: where each part of the `taskrun` package lives
PRODUCTS = {"layers/core": "the core (the Lambda layer)", "local": "the local stack", "client": "the client and CLI"}
ONLY_ON_A_LAPTOP = ("taskrun.local", "taskrun.client", "taskrun.cli")


def test_the_client_alone_in_a_fresh_venv_lists_runs_of_a_local_stack(base_url: str, tmp_path: Path) -> None:
    """What a client installs, and nothing else: `pip install .` (no extra) into a new venv,
    whose `taskrun runs list` reads the runs of a running local stack without the emulator."""
    venv = tmp_path / "client"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    installed = subprocess.run(
        [str(venv / "bin/pip"), "install", "-q", "--disable-pip-version-check", str(ROOT)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    listed = subprocess.run(
        [str(venv / "bin/taskrun"), "runs", "list", "--limit", "1", "--json"],
        env={**os.environ, "TASKRUN_URL": base_url, "TASKRUN_API_KEY": API_KEY},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    assert isinstance(json.loads(listed.stdout), list)
    # and nothing of the local stack came with it
    freeze = subprocess.run([str(venv / "bin/pip"), "freeze"], capture_output=True, text=True, timeout=120).stdout
    assert not {_normal(line.split("==")[0]) for line in freeze.splitlines()} & {"moto", "flask", "aws-sam-translator"}


def test_three_products_are_three_folders_and_the_core_needs_neither_other() -> None:
    import tomllib

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    # every package folder of the three products is installed, from where it lives
    found = {}
    for root in PRODUCTS:
        for init in (ROOT / root).rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                package = init.parent.relative_to(ROOT / root)
                found[".".join(package.parts)] = str(init.parent.relative_to(ROOT))
    assert found == setuptools["package-dir"], "pyproject's package-dir is not the folders' packages"
    assert sorted(setuptools["packages"]) == sorted(found)
    # the core holds none of what only a laptop runs, and imports none of it
    core = ROOT / "layers/core/taskrun"
    for module in core.rglob("*.py"):
        imports = re.findall(r"^\s*(?:from|import) (taskrun\.[\w.]+)", module.read_text(), re.MULTILINE)
        reaching = [name for name in imports if name.startswith(ONLY_ON_A_LAPTOP)]
        assert not reaching, f"{module.relative_to(ROOT)} imports {reaching}"


def test_the_module_map_names_every_module_of_the_tree_and_no_other() -> None:
    """docs/architecture.md's module map, held to the packages that exist: a row a core
    module, and a row for each of the other products naming each of its modules."""
    text = (ROOT / "docs/architecture.md").read_text()
    rows = [line.split(" | ")[:2] for line in text.splitlines() if line.startswith("| `taskrun")]
    mapped = {name for first, _ in rows for name in re.findall(r"`(taskrun[\w.]*)`", first)}
    core = ROOT / "layers/core/taskrun"
    modules = {
        ".".join(("taskrun", *path.relative_to(core).with_suffix("").parts)).removesuffix(".__init__")
        for path in core.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    packages = {name for name in modules if core.joinpath(*name.split(".")[1:], "__init__.py").is_file()}
    assert mapped - {"taskrun.local.*", "taskrun.client.*", "taskrun.cli.*"} == modules - (packages - {"taskrun"})
    for product, folder in [
        ("local", "local/taskrun/local"),
        ("client", "client/taskrun/client"),
        ("cli", "client/taskrun/cli"),
    ]:
        row = next(what for first, what in rows if first == f"| `taskrun.{product}.*`")
        named = set(re.findall(r"`([a-z_]+)`", row))
        found = {path.stem for path in (ROOT / folder).glob("*.py")} - {"__init__", "__main__"}
        assert found == named - {"taskrun"}, (product, found ^ named)  # the cli row names the `taskrun` command
