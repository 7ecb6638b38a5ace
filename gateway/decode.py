"""Turns raw Modbus registers and bits into typed point values; pure, no I/O.

Decoding is a table: each data type has a ``struct`` format of its width. Registers are
first laid out as bytes in the device's order (``WordOrder``: ABCD big-endian; CDAB words
reversed; BADC bytes swapped in each word; DCBA fully little-endian), then unpacked
big-endian. A bool in a register table is one bit of the point's first register. The value
is ``raw * scale + offset``; integers stay integers when scale is 1 and offset 0. A NaN or
infinite result, or the raw value the profile names ``invalid`` (the device's "not
available" sentinel, such as 0xFFFF), raises ``DecodeError``: the point is bad, never sent
as a number."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from facility.messages import Value
from facility.profiles import DataType, ModbusPoint, ModbusTable, WordOrder
from gateway.errors import DecodeError

STRUCT_FORMAT: dict[DataType, str] = {
    DataType.INT16: ">h",
    DataType.UINT16: ">H",
    DataType.INT32: ">i",
    DataType.UINT32: ">I",
    DataType.INT64: ">q",
    DataType.UINT64: ">Q",
    DataType.FLOAT32: ">f",
    DataType.FLOAT64: ">d",
}

# (reverse the word order, swap the two bytes of each word)
_LAYOUT: dict[WordOrder, tuple[bool, bool]] = {
    WordOrder.ABCD: (False, False),
    WordOrder.CDAB: (True, False),
    WordOrder.BADC: (False, True),
    WordOrder.DCBA: (True, True),
}


def registers_to_bytes(registers: Sequence[int], order: WordOrder) -> bytes:
    """The value's bytes, most significant first, from registers as the device sent them."""
    reverse_words, swap_bytes = _LAYOUT[order]
    words = list(reversed(registers)) if reverse_words else list(registers)
    out = bytearray()
    for w in words:
        hi, lo = (w >> 8) & 0xFF, w & 0xFF
        out += bytes((lo, hi)) if swap_bytes else bytes((hi, lo))
    return bytes(out)


def decode_bits(point: ModbusPoint, bits: Sequence[bool]) -> bool:
    """A coil or discrete input: the first bit of the slice given."""
    if not bits:
        raise DecodeError(point.name, "no bit read")
    return bool(bits[0])


def decode_registers(point: ModbusPoint, registers: Sequence[int]) -> Value:
    """A register-table point from exactly its ``point.count`` registers."""
    if len(registers) != point.count:
        raise DecodeError(point.name, f"{len(registers)} registers, expected {point.count}")
    if point.type is DataType.BOOL:
        assert point.bit is not None  # the profile refuses a register bool without a bit
        return bool((registers[0] >> point.bit) & 1)
    if point.type is DataType.STRING:
        return _decode_string(point, registers)
    raw = struct.unpack(STRUCT_FORMAT[point.type], registers_to_bytes(registers, point.order))[0]
    if point.invalid is not None and raw == point.invalid:
        raise DecodeError(point.name, f"raw value {raw} means 'not available'")
    return _scaled(point, raw)


def decode_point(point: ModbusPoint, data: Sequence[int] | Sequence[bool]) -> Value:
    """Dispatch on the point's table: bits for coils and discrete inputs, else registers."""
    if point.table in (ModbusTable.COIL, ModbusTable.DISCRETE):
        return decode_bits(point, [bool(b) for b in data])
    return decode_registers(point, [int(r) for r in data])


def _decode_string(point: ModbusPoint, registers: Sequence[int]) -> str:
    _, swap_bytes = _LAYOUT[point.order]
    order = WordOrder.BADC if swap_bytes else WordOrder.ABCD
    text = registers_to_bytes(registers, order).decode("utf-8", errors="replace")
    return text.rstrip("\x00 ")


def _scaled(point: ModbusPoint, raw: int | float) -> Value:
    if isinstance(raw, float) and not math.isfinite(raw):
        raise DecodeError(point.name, f"raw value is {raw}")
    if isinstance(raw, int) and point.scale == 1.0 and point.offset == 0.0:
        return raw
    value = raw * point.scale + point.offset
    if not math.isfinite(value):
        raise DecodeError(point.name, f"scaled value is {value}")
    # 12 significant digits: drops binary noise such as 215 * 0.1 = 21.500000000000004
    return float(f"{value:.12g}")
