"""Pure pieces of the API: typing stored values by point type and quality names."""

from __future__ import annotations

import math

import pytest

from api.values import quality_name, typed_value


@pytest.mark.parametrize(
    ("point_type", "value", "text", "expected"),
    [
        ("bool", 1.0, None, True),
        ("bool", 0.0, None, False),
        ("int16", -3.0, None, -3),
        ("uint32", 4_000_000_000.0, None, 4_000_000_000),
        ("int", 2.0, None, 2),
        ("int16", 1.25, None, 1.25),  # a scaled integer register keeps its fraction
        ("float32", 2.0, None, 2.0),
        ("float", 0.5, None, 0.5),
        ("uint16", None, "inspection", "inspection"),  # enum label stored as text
        ("string", None, "", ""),
        ("float32", None, None, None),
        ("float32", math.nan, None, None),
        ("float64", math.inf, None, None),
        ("bool", -math.inf, None, None),
    ],
)
def test_typed_value(point_type: str, value: float | None, text: str | None,
                     expected: object) -> None:
    result = typed_value(point_type, value, text)
    assert result == expected
    assert type(result) is type(expected)


def test_quality_names() -> None:
    assert [quality_name(q) for q in (0, 1, 2, 7, None)] == [
        "good", "bad", "stale", "unknown", "unknown"]

