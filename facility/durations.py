"""Durations as written in configuration files (scenarios, procedures, misbehaviour,
dispatch): a number of seconds, or a number with a unit `ms`, `s`, `m`, `h` or `d` ("250ms",
"20s", "10m", "1.5h", "7d"), turned into seconds; pure logic, no I/O."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(value: object) -> float:
    """'20s' -> 20.0, '10m' -> 600.0, 5 -> 5.0 (seconds); ValueError for anything else."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration like 500ms, 20s, 10m, 2h, 7d")
    return float(m.group(1)) * _UNIT_S[m.group(2)]
