"""A script's result as JSON: checked against its declared return type, and against the
JSON Schema a run may bring (`json_schema`), with the path and reason of what breaks them."""

from __future__ import annotations

import math
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from taskrun.errors import InvalidResult

MAX_DEPTH = 64  # levels of nesting a result may have


def _path(parts: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(["result", *(str(part) for part in parts)])


def as_json(value: Any, adapter: TypeAdapter[Any], declared: bool) -> Any:
    """The result as JSON-ready data; InvalidResult names the first part that is wrong.

    With a declared return type the value must be of that type, without conversion (a
    string is not an int); without one it must be JSON already (dicts with string keys,
    lists, tuples, strings, numbers, booleans, None)."""
    if not declared:
        return _plain(value, [], set())
    try:
        valid = adapter.validate_python(value, strict=True)
    except ValidationError as error:
        first = error.errors()[0]
        raise InvalidResult(
            f"{_path(first['loc'])}: {first['msg'].lower()} (the task declares {_type_name(adapter)})"
        ) from None
    except RecursionError:
        raise InvalidResult("result: it refers to itself (a cycle)") from None
    try:
        dumped = adapter.dump_python(valid, mode="json")
    except (PydanticSerializationError, ValueError) as error:
        raise InvalidResult(f"result: JSON cannot hold it: {error}") from None
    return _plain(dumped, [], set())


def _type_name(adapter: TypeAdapter[Any]) -> str:
    schema = adapter.json_schema()
    return str(schema.get("title") or schema.get("type") or "its return type")


def _plain(value: Any, path: list[Any], open_: set[int]) -> Any:
    """The value with tuples as lists, if JSON can hold it."""
    if len(path) > MAX_DEPTH:
        raise InvalidResult(f"{_path(path[:MAX_DEPTH])}: nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise InvalidResult(f"{_path(path)}: {value} is not a JSON number")
        return value
    if isinstance(value, (dict, list, tuple)):
        if id(value) in open_:
            raise InvalidResult(f"{_path(path)}: it contains itself (a cycle)")
        open_.add(id(value))
        try:
            if isinstance(value, dict):
                plain = {}
                for key, item in value.items():
                    if not isinstance(key, str):
                        raise InvalidResult(f"{_path(path)}: key {key!r} is not a string")
                    plain[key] = _plain(item, [*path, key], open_)
                return plain
            return [_plain(item, [*path, index], open_) for index, item in enumerate(value)]
        finally:
            open_.discard(id(value))
    raise InvalidResult(f"{_path(path)}: a {type(value).__name__} is not JSON (declare a return type to convert it)")
