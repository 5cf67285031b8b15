"""Secret parameters: given to the task as they are, masked wherever taskrun shows a run.

A parameter is secret when its type is pydantic's `SecretStr` (the task gets a SecretStr,
`.get_secret_value()` gives the text) or `Annotated[str, Secret()]` (the task gets the
text). Both mark the parameter's JSON Schema `writeOnly` (with `format: password`), and
masking follows the schema: run answers, webhooks and error echoes show `MASK` instead;
a task's logs and error messages have the values themselves replaced. Where a client sends
back what it was shown (a schedule's arguments), `unmasked` gives each masked secret its
saved value again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import Field, SecretBytes, SecretStr

MASK = "********"
SHORTEST_SCRUBBED = 4  # a shorter secret is masked where it is a value, not hunted in text


def Secret() -> Any:
    """Mark a parameter secret: `def task(token: Annotated[str, Secret()]) -> ...`."""
    return Field(json_schema_extra={"writeOnly": True, "format": "password"})


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(defs.get(ref.rsplit("/", 1)[1], {}), defs)
    return schema


def _branches(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The schema and the branches of its anyOf/oneOf/allOf, each resolved."""
    found = [_resolve(schema, defs)]
    for key in ("anyOf", "oneOf", "allOf"):
        for branch in found[0].get(key, []):
            found += _branches(branch, defs)
    return found


def _items(branches: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    """The schema of an array's items, from whichever branch gives one."""
    return next((branch["items"] for branch in branches if isinstance(branch.get("items"), dict)), {})


def is_secret(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> bool:
    return any(branch.get("writeOnly") for branch in _branches(schema, defs))


def _properties(branches: list[Mapping[str, Any]]) -> dict[str, Any]:
    """An object's properties' schemas, from every branch that gives some."""
    properties: dict[str, Any] = {}
    for branch in branches:
        properties.update(branch.get("properties", {}))
    return properties


ValuePath = tuple[str | int, ...]


def _walk(
    value: Any,
    schema: Mapping[str, Any],
    defs: Mapping[str, Any],
    secret: Callable[[Any, ValuePath], Any],
    path: ValuePath = (),
) -> Any:
    """`value` with each part its schema marks secret replaced by `secret(part, its path)`
    (null stays null)."""
    if value is None:
        return None
    if is_secret(schema, defs):
        return secret(value, path)
    branches = _branches(schema, defs)
    if isinstance(value, dict):
        properties = _properties(branches)
        return {key: _walk(item, properties.get(key, {}), defs, secret, (*path, key)) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, _items(branches), defs, secret, (*path, at)) for at, item in enumerate(value)]
    return value


def masked(value: Any, schema: Mapping[str, Any], defs: Mapping[str, Any] | None = None) -> Any:
    """`value` with every part its schema marks secret replaced by MASK (null stays null)."""
    return _walk(value, schema, schema.get("$defs", {}) if defs is None else defs, lambda _, __: MASK)


def _part(value: Any, path: ValuePath) -> Any:
    """The part of `value` at `path`, or None where it has none."""
    for step in path:
        if isinstance(step, str) and isinstance(value, dict):
            value = value.get(step)
        elif isinstance(step, int) and isinstance(value, list) and step < len(value):
            value = value[step]
        else:
            return None
    return value


def unmasked(
    value: Any, saved: Any, schema: Mapping[str, Any], defs: Mapping[str, Any] | None = None
) -> tuple[Any, list[ValuePath]]:
    """`value` with each secret part that reads MASK (sent back as a client was shown it)
    replaced by the part at the same place in `saved`, so the mask never overwrites a kept
    secret; and the places of the masks `saved` has no value for."""
    unmatched: list[ValuePath] = []

    def keep(part: Any, path: ValuePath) -> Any:
        if part != MASK:
            return part
        kept = _part(saved, path)
        if kept is None:
            unmatched.append(path)
            return part
        return kept

    return _walk(value, schema, schema.get("$defs", {}) if defs is None else defs, keep), unmatched


def secret_at(path: Sequence[str | int], schema: Mapping[str, Any], defs: Mapping[str, Any] | None = None) -> bool:
    """Whether the value at `path` inside a value of `schema` is (inside) a secret."""
    defs = schema.get("$defs", {}) if defs is None else defs
    current: Mapping[str, Any] = schema
    for part in path:
        if is_secret(current, defs):
            return True
        branches = _branches(current, defs)
        current = _items(branches) if isinstance(part, int) else _properties(branches).get(part, {})
    return is_secret(current, defs)


def secret_values(value: Any, schema: Mapping[str, Any], defs: Mapping[str, Any] | None = None) -> list[str]:
    """The texts of the secrets in `value`, longest first, to scrub from logs and messages."""
    found: set[str] = set()

    def keep(secret: Any, _: ValuePath) -> None:
        text = secret.get_secret_value() if isinstance(secret, SecretStr | SecretBytes) else secret
        if isinstance(text, bytes):
            text = text.decode(errors="replace")
        if isinstance(text, str) and len(text) >= SHORTEST_SCRUBBED:
            found.add(text)

    _walk(value, schema, schema.get("$defs", {}) if defs is None else defs, keep)
    return sorted(found, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with each secret's text replaced by MASK."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def revealed(value: Any) -> Any:
    """`value` with every SecretStr or SecretBytes in it replaced by its text, to be stored
    and handed to the task (pydantic's JSON would write asterisks)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, SecretBytes):
        return value.get_secret_value().decode(errors="replace")
    if isinstance(value, dict):
        return {key: revealed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [revealed(item) for item in value]
    return value
