"""Decoding table: test vectors are built here with struct, independently of the decoder."""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest

from facility.profiles import DataType, ModbusPoint, WordOrder
from gateway.decode import decode_point, decode_registers
from gateway.errors import DecodeError

FORMATS = {
    "int16": "h", "uint16": "H", "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q",
    "float32": "f", "float64": "d",
}


def point(type_: str, order: str = "ABCD", **kw: Any) -> ModbusPoint:
    return ModbusPoint(name="p", table="holding", address=0, type=type_, order=order, **kw)


def wire_registers(fmt: str, value: float, order: str) -> list[int]:
    """Registers as a device with ``order`` puts them on the wire."""
    if order == "DCBA":
        data = struct.pack("<" + fmt, value)  # fully little-endian
    else:
        data = struct.pack(">" + fmt, value)
        words = [data[i : i + 2] for i in range(0, len(data), 2)]
        if order == "CDAB":
            words.reverse()
        if order == "BADC":
            words = [w[::-1] for w in words]
        data = b"".join(words)
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


CASES = [
    ("int16", -1234), ("uint16", 65000), ("int32", -70000), ("uint32", 4_000_000_000),
    ("int64", -(2**40) - 5), ("uint64", 2**63 + 7), ("float32", 12.5), ("float64", -1.0e-3),
]


@pytest.mark.parametrize("order", ["ABCD", "CDAB", "BADC", "DCBA"])
@pytest.mark.parametrize(("type_", "value"), CASES)
def test_every_type_in_every_order(type_: str, value: float, order: str) -> None:
    regs = wire_registers(FORMATS[type_], value, order)
    got = decode_registers(point(type_, order), regs)
    assert got == value
    assert isinstance(got, float if type_.startswith("float") else int)


@pytest.mark.parametrize(("order", "regs"), [
    ("ABCD", [0x4148, 0x0000]), ("CDAB", [0x0000, 0x4148]),
    ("BADC", [0x4841, 0x0000]), ("DCBA", [0x0000, 0x4841]),
])
def test_float32_literal_vectors(order: str, regs: list[int]) -> None:
    # 12.5 is 0x41480000
    assert decode_registers(point("float32", order), regs) == 12.5


def test_uint32_cdab_literal() -> None:
    # 0x00012345 with the low word first
    assert decode_registers(point("uint32", "CDAB"), [0x2345, 0x0001]) == 0x12345


def test_scale_and_offset() -> None:
    p = point("int16", scale=0.1, offset=-40.0)
    assert decode_registers(p, [wire_registers("h", 215, "ABCD")[0]]) == pytest.approx(-18.5)
    assert decode_registers(point("int16", scale=0.1), [215]) == 21.5  # no binary noise
    assert decode_registers(point("int16", scale=0.01), [0xFFFF]) == -0.01


def test_unscaled_integer_stays_int_and_scaled_becomes_float() -> None:
    assert decode_registers(point("uint16"), [7]) == 7
    assert isinstance(decode_registers(point("uint16", scale=2.0), [7]), float)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_float_is_bad(bad: float) -> None:
    with pytest.raises(DecodeError) as err:
        decode_registers(point("float32"), wire_registers("f", bad, "ABCD"))
    assert err.value.point == "p"


def test_bit_extraction_from_a_register() -> None:
    regs = [0b1000_0000_0000_0100]
    assert decode_registers(point("bool", bit=2), regs) is True
    assert decode_registers(point("bool", bit=3), regs) is False
    assert decode_registers(point("bool", bit=15), regs) is True


def test_bits_of_coils_and_discrete_inputs() -> None:
    p = ModbusPoint(name="b", table="discrete", address=3, type=DataType.BOOL)
    assert decode_point(p, [True]) is True
    assert decode_point(p, [False]) is False


def test_string_strips_padding_and_honours_byte_swap() -> None:
    data = b"AB-12\x00"
    regs = [int.from_bytes(data[i : i + 2], "big") for i in range(0, 6, 2)]
    swapped = [int.from_bytes(data[i : i + 2], "little") for i in range(0, 6, 2)]
    assert decode_registers(point("string", length=3), regs) == "AB-12"
    assert decode_registers(point("string", order=WordOrder.BADC, length=3), swapped) == "AB-12"


def test_wrong_register_count_is_bad() -> None:
    with pytest.raises(DecodeError):
        decode_registers(point("float32"), [1])


def test_the_devices_not_available_sentinel_makes_the_point_bad() -> None:
    p = point("int16", invalid=-32768)
    with pytest.raises(DecodeError, match="not available"):
        decode_registers(p, [0x8000])
    assert decode_registers(p, [0x7FFF]) == 32767
    assert decode_registers(point("uint16", invalid=0xFFFF, scale=0.1), [100]) == 10.0
