"""Powertools' REST event handler, without the packages' other parts at a cold start.

Two of Powertools' package `__init__`s import every module they have:
`aws_lambda_powertools.event_handler` every resolver (AppSync's module imports asyncio and,
with it, ssl; Bedrock agents; VPC Lattice; function URLs), and
`aws_lambda_powertools.utilities.data_classes` (which the REST resolver imports) every event
source's class (CodePipeline's imports zipfile and tempfile; Kafka, S3, SES, ...): ~25 ms of
a cold start that an API function never uses. Importing this module first registers both
as lazy packages (PEP 562): each name their `__init__` imports comes from its own module on
first use, so `from aws_lambda_powertools.event_handler import Response` still works
everywhere (Powertools' own modules say it too), and only the modules a handler asks for
load. The names are read from the real `__init__` (a Powertools upgrade that adds or moves
one needs nothing here); one that does anything but import names and set `__all__` is
imported as it is. Where a package was imported already (a sandbox's preloaded libraries),
it is left as it is. tests/test_cold_imports.py holds every name of both to resolve through
the lazy packages to what the eager import gives.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

LAZY_PACKAGES = ("aws_lambda_powertools.event_handler", "aws_lambda_powertools.utilities.data_classes")


def exports(package: str) -> dict[str, str] | None:
    """Each name the package's `__init__` imports, by the full name of the module it comes
    from; None when the `__init__` does more than that (it is then imported as it is)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    names: dict[str, str] = {}
    try:
        tree = ast.parse(Path(spec.origin).read_bytes())
    except (OSError, SyntaxError, ValueError):  # no source to read (a .pyc-only install): imported as it is
        return None
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module != "__future__":
            module = f"{package}.{node.module}" if node.level == 1 else node.module
            if node.level > 1 or not module.startswith(package + "."):
                return None
            if any(alias.name == "*" or alias.asname for alias in node.names):
                return None
            names.update(dict.fromkeys((alias.name for alias in node.names), module))
        elif isinstance(node, ast.Assign) and [ast.unparse(target) for target in node.targets] == ["__all__"]:
            continue
        elif not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):  # a docstring
            return None
    return names


def _lazy_package(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    names = exports(name)
    if spec is None or spec.loader is None or names is None:
        return
    package = importlib.util.module_from_spec(spec)  # its __path__ and __spec__, its __init__ not run

    def __getattr__(attribute: str) -> Any:
        # a name the __init__ would have imported; anything else (a submodule asked for by
        # `from package import submodule`) is not an attribute yet, and the import system
        # then imports it as a submodule
        if attribute not in names:
            raise AttributeError(f"module {name!r} has no attribute {attribute!r}")
        value = getattr(importlib.import_module(names[attribute]), attribute)
        setattr(package, attribute, value)
        return value

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    package.__all__ = list(names)  # type: ignore[attr-defined]
    sys.modules[name] = package
    for attribute, module in names.items():
        if module == f"{name}.{attribute}":  # a name that is also its submodule's (data_classes.event_source):
            # importing the submodule first would leave the module where the name should be
            setattr(package, attribute, getattr(importlib.import_module(module), attribute))
    parent, _, child = name.rpartition(".")
    if isinstance(sys.modules.get(parent), ModuleType):
        setattr(sys.modules[parent], child, package)


for _package in LAZY_PACKAGES:
    _lazy_package(_package)

from aws_lambda_powertools.event_handler.api_gateway import APIGatewayRestResolver, Response  # noqa: E402
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware  # noqa: E402
from aws_lambda_powertools.event_handler.openapi.exceptions import (  # noqa: E402
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Query  # noqa: E402
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse  # noqa: E402

__all__ = [
    "APIGatewayRestResolver",
    "Body",
    "NextMiddleware",
    "OpenAPIResponse",
    "Query",
    "RequestUnsupportedContentType",
    "RequestValidationError",
    "Response",
]
