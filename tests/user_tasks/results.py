"""Tasks whose results break their declared type, or JSON itself."""

from typing import Any

from pydantic import BaseModel

from taskrun import task


class Line(BaseModel):
    sku: str
    price: float


class Invoice(BaseModel):
    lines: list[Line]


@task("results/mistyped", timeout=5)
def mistyped() -> int:
    return "five"  # type: ignore[return-value]


@task("results/invoice", timeout=5)
def invoice(broken: bool = False) -> Invoice:
    lines: list[Any] = [{"sku": "a", "price": 1.5}, {"sku": "b", "price": "free" if broken else 2}]
    return Invoice.model_validate({"lines": lines}) if not broken else {"lines": lines}  # type: ignore[return-value]


@task("results/untyped", timeout=5)
def untyped(kind: str = "plain"):  # type: ignore[no-untyped-def]
    """No return annotation: any JSON value goes; anything else fails the run."""
    if kind == "object":
        return {"thing": object()}
    if kind == "nan":
        return {"values": [1.0, float("nan")]}
    if kind == "infinity":
        return float("inf")
    if kind == "cycle":
        loop: list[Any] = [1]
        loop.append({"back": loop})
        return loop
    if kind == "deep":
        value: Any = "bottom"
        for _ in range(100):
            value = {"down": value}
        return value
    if kind == "int-keys":
        return {1: "one"}
    return {"pair": (1, 2), "text": "ok", "none": None}


@task("results/cached", timeout=5, cache_ttl=60)
def cached(word: str, marks: str) -> dict[str, str]:
    """Leaves a mark each time it really runs, so a test can tell a cached answer."""
    import uuid
    from pathlib import Path

    Path(marks, f"{word}.{uuid.uuid4().hex}").touch()
    return {"word": word, "run": uuid.uuid4().hex}


@task("results/cached_briefly", timeout=5, cache_ttl=1)
def cached_briefly(word: str) -> str:
    import uuid

    return f"{word}-{uuid.uuid4().hex}"
