from __future__ import annotations

import math

import pytest
from bacpypes3.basetypes import BinaryPV, ErrorType
from bacpypes3.primitivedata import Boolean, CharacterString, Real, Unsigned

from facility.profiles import BacnetPoint
from gateway.bacnet import convert
from gateway.errors import DecodeError


def pt(type_: str, object_type: str = "binaryInput") -> BacnetPoint:
    return BacnetPoint(name="p", object_type=object_type, instance=1, type=type_)


def test_binary_present_value_active_is_true() -> None:
    assert convert(pt("bool"), BinaryPV("active")) is True
    assert convert(pt("bool"), BinaryPV("inactive")) is False
    assert convert(pt("bool"), Boolean(True)) is True


def test_numbers_and_strings_become_plain_json_types() -> None:
    got = convert(pt("int", "multiStateValue"), Unsigned(3))
    assert got == 3 and type(got) is int
    got = convert(pt("float", "analogInput"), Real(21.5))
    assert got == 21.5 and type(got) is float
    got = convert(pt("string", "analogValue"), CharacterString("ok"))
    assert got == "ok" and type(got) is str


@pytest.mark.parametrize("raw", [None, ErrorType(errorClass="object", errorCode="unknownObject"),
                                 Real(math.nan)])
def test_errors_and_non_finite_values_are_bad(raw: object) -> None:
    with pytest.raises(DecodeError):
        convert(pt("float", "analogInput"), raw)
