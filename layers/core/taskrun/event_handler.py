"""Powertools' REST event handler, without the package's other resolvers at a cold start.

`aws_lambda_powertools.event_handler`'s `__init__` imports every resolver it has (AppSync,
whose module imports asyncio and, with it, ssl; Bedrock agents; VPC Lattice; function URLs):
~15 ms of a cold start that an API function never uses. Importing this module first
registers the package as a lazy one (PEP 562): each name of its `__all__` is imported from
its own module on first use, so `from aws_lambda_powertools.event_handler import Response`
still works everywhere (Powertools' own modules say it too), and only the REST resolver's
modules load. Where the package was imported already (a sandbox's preloaded libraries), it
is left as it is. tests/test_cold_imports.py holds every name of the real `__all__` to
resolve through the lazy package.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any

PACKAGE = "aws_lambda_powertools.event_handler"

# each name the package's __init__ exports, by the module it comes from (Powertools 3.37.0)
EXPORTS = {
    "ALBResolver": "api_gateway",
    "APIGatewayHttpResolver": "api_gateway",
    "ApiGatewayResolver": "api_gateway",
    "APIGatewayRestResolver": "api_gateway",
    "CORSConfig": "api_gateway",
    "Response": "api_gateway",
    "AppSyncResolver": "appsync",
    "BedrockAgentResolver": "bedrock_agent",
    "BedrockResponse": "bedrock_agent",
    "BedrockAgentFunctionResolver": "bedrock_agent_function",
    "BedrockFunctionResponse": "bedrock_agent_function",
    "DependencyResolutionError": "depends",
    "Depends": "depends",
    "AppSyncEventsResolver": "events_appsync.appsync_events",
    "HttpResolver": "http_resolver",
    "HttpResolverLocal": "http_resolver",
    "LambdaFunctionUrlResolver": "lambda_function_url",
    "Request": "request",
    "VPCLatticeResolver": "vpc_lattice",
    "VPCLatticeV2Resolver": "vpc_lattice",
}


def _lazy_package() -> None:
    if PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or spec.loader is None:
        return
    package = importlib.util.module_from_spec(spec)  # its __path__ and __spec__, its __init__ not run

    def __getattr__(name: str) -> Any:
        # a name the __init__ would have imported; anything else (a submodule asked for by
        # `from package import submodule`) is not an attribute yet, and the import system
        # then imports it as a submodule
        if name not in EXPORTS:
            raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{PACKAGE}.{EXPORTS[name]}"), name)
        setattr(package, name, value)
        return value

    package.__getattr__ = __getattr__  # type: ignore[method-assign]
    package.__all__ = list(EXPORTS)  # type: ignore[attr-defined]
    sys.modules[PACKAGE] = package
    parent = sys.modules.get(PACKAGE.rpartition(".")[0])
    if isinstance(parent, ModuleType):
        setattr(parent, "event_handler", package)  # noqa: B010 (the parent does not declare it)


_lazy_package()

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
