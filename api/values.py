"""Typing of stored values for the API: telemetry keeps numbers in ``value`` (booleans as 0/1)
and strings in ``value_text``; the point's declared type turns them back into JSON booleans,
integers, floats or strings. Pure functions, no I/O."""

from __future__ import annotations

import math
from enum import IntEnum

JsonValue = bool | int | float | str | None

_INTEGER_TYPES = frozenset({"int", "int16", "uint16", "int32", "uint32", "int64", "uint64"})


class Quality(IntEnum):
    GOOD = 0
    BAD = 1
    STALE = 2


def quality_name(code: int | None) -> str:
    """'good', 'bad', 'stale', or 'unknown' for a code the schema does not define."""
    try:
        return Quality(code).name.lower() if code is not None else "unknown"
    except ValueError:
        return "unknown"


def typed_value(point_type: str, value: float | None, value_text: str | None) -> JsonValue:
    """The JSON value of a stored reading: text wins, then the point type shapes the number.
    NaN and infinities (not representable in JSON) come back as None."""
    if value_text is not None:
        return value_text
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    if point_type == "bool":
        return value != 0
    if point_type in _INTEGER_TYPES and value.is_integer():
        return int(value)
    return float(value)
