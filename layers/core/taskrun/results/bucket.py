"""A script's result as JSON: checked against its declared return type, and against the
JSON Schema a run may bring (`json_schema`), with the path and reason of what breaks them."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from taskrun import aws
from taskrun.errors import FieldError, InvalidInput, InvalidResult
from taskrun.models import Run, RunView

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


MAX_SCHEMA_CHARS = 65_536  # of a run's json_schema, as JSON
MAX_MESSAGE_CHARS = 500


def check_schema(schema: dict[str, Any], location: str = "body.json_schema") -> None:
    """InvalidInput at `location` unless `schema` is a Draft 2020-12 JSON Schema taskrun keeps."""
    size = len(json.dumps(schema))
    if size > MAX_SCHEMA_CHARS:
        raise InvalidInput(
            "the json_schema is too large",
            [FieldError(location, f"{size:,} characters of JSON; at most {MAX_SCHEMA_CHARS:,}")],
        )
    from jsonschema import Draft202012Validator  # only a run with a json_schema needs it (35 ms to import)
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as error:
        where = ".".join([location, *(str(part) for part in error.absolute_path)])
        raise InvalidInput(
            "the json_schema is not a valid JSON Schema (Draft 2020-12)",
            [FieldError(where, _clip(error.message))],
        ) from None
    except RecursionError:
        raise InvalidInput(
            "the json_schema is nested too deeply", [FieldError(location, "nested too deeply")]
        ) from None


def check_against(result: Any, schema: dict[str, Any]) -> None:
    """InvalidResult, naming the path, unless the result is valid against the run's schema."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match
    from referencing.exceptions import Unresolvable

    try:
        error = best_match(Draft202012Validator(schema).iter_errors(result))
    except (Unresolvable, RecursionError, re.error) as problem:
        raise InvalidResult(f"result: the json_schema could not be applied: {_clip(str(problem))}") from None
    if error is not None:
        raise InvalidResult(f"{_path(list(error.absolute_path))}: {_clip(error.message)} (json_schema)")


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 6] + " [cut]"


MAX_STORED_RESULT_BYTES = 64 * 1024 * 1024  # a result kept in S3 (the worker holds it in memory)
RESULT_LINK_SECONDS = 3600  # how long a result_url works


REFERENCE = "taskrun_result"  # a flow state's stand-in for a result kept in the bucket


def reference_to(key: str, size: int) -> dict[str, Any]:
    return {REFERENCE: {"key": key, "bytes": size}}


def referenced_key(value: Any) -> str | None:
    """The bucket key a value stands for, if it is a reference to a stored result."""
    if isinstance(value, dict) and set(value) == {REFERENCE} and isinstance(value[REFERENCE], dict):
        key = value[REFERENCE].get("key")
        if isinstance(key, str) and key.startswith("results/"):
            return key
    return None


class ResultStore:
    """Results too large for the run's record, as JSON objects in the stack's bucket
    (`results/<run_id>.json`), read through pre-signed links."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket

    def put(self, name: str, data: bytes) -> str:
        """Keep a result as `results/<name>.json` (name: a run id, or an execution's step)."""
        key = f"results/{name}.json"
        aws.client("s3").put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json")
        return key

    def get(self, key: str) -> Any:
        return json.loads(aws.client("s3").get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def url(self, key: str) -> str:
        """A fresh pre-signed GET link, valid for RESULT_LINK_SECONDS."""
        link: str = aws.client("s3").generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=RESULT_LINK_SECONDS
        )
        return link


def presented(run: Run, results: ResultStore | None) -> RunView:
    """The run as the API shows it: a result kept in S3 as a fresh `result_url`."""
    view = run.to_api()
    if run.result_key is not None and results is not None:
        view.result_url = results.url(run.result_key)
    return view
