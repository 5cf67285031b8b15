"""List cursors: where the next page starts (below an id), tied to the filter they were
given for, as base64url JSON. Only a cursor this API gave out, for the same filter, passes:
the index key it reads and, as a digest, every other filter of the list (a status, a
trigger, the caller's task patterns)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping

from taskrun.errors import FieldError, InvalidInput


def filter_digest(*parts: object) -> str:
    """A short digest of a list's other filters, for a cursor to carry."""
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def pack(key: Mapping[str, object]) -> str:
    """A cursor's fields as base64url JSON, unpadded."""
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode().rstrip("=")


def unpack(cursor: str) -> object:
    """What `pack` made of a cursor; None for text that is not base64url JSON."""
    try:
        return json.loads(base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return None


def encode(before: str, key_name: str, key_value: str, filters: str = "") -> str:
    return pack({"before": before, key_name: key_value} | ({"filters": filters} if filters else {}))


def decode(cursor: str, key_name: str, key_value: str, id_pattern: re.Pattern[str], filters: str = "") -> str:
    """The id a cursor holds; InvalidInput at `query.cursor` for anything else."""
    key = unpack(cursor)
    if (
        isinstance(key, dict)
        and set(key) == {"before", key_name} | ({"filters"} if filters else set())
        and key[key_name] == key_value
        and key.get("filters", "") == filters
        and isinstance(key["before"], str)
        and id_pattern.fullmatch(key["before"])
    ):
        return str(key["before"])
    raise InvalidInput(
        "the cursor is not one this API gave out", [FieldError("query.cursor", "invalid cursor", cursor)]
    )
