"""Lays a device's point values out in Modbus tables as its profile says; no I/O.

Values are encoded with pymodbus' own codec (`ModbusClientMixin.convert_to_registers`),
never with the gateway's decoder, so a decoding bug cannot cancel itself out in a test.
Scaling follows the profile's convention, value = raw * scale + offset, so the served raw is
(value - offset) / scale (rounded and clamped for integer types). Word orders: ABCD is
big-endian words of big-endian bytes, CDAB swaps the words, BADC swaps the bytes in each
word, DCBA does both. A bool with `bit` sets that bit of a shared register. Bit tables use
bit addresses (coil 5 is bit 5), as on the wire."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeAlias

from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.simulator import DataType as SimType
from pymodbus.simulator import SimData, SimDevice

from facility.profiles import DataType, ModbusPoint, ModbusProfile, ModbusTable, WordOrder
from simulators.models import PointValue

CodecType = ModbusClientMixin.DATATYPE
TableImage: TypeAlias = dict[int, int | bool]
"""address -> register value (0-65535) or bit value."""

CODEC_TYPE: dict[DataType, CodecType] = {
    DataType.INT16: CodecType.INT16,
    DataType.UINT16: CodecType.UINT16,
    DataType.INT32: CodecType.INT32,
    DataType.UINT32: CodecType.UINT32,
    DataType.INT64: CodecType.INT64,
    DataType.UINT64: CodecType.UINT64,
    DataType.FLOAT32: CodecType.FLOAT32,
    DataType.FLOAT64: CodecType.FLOAT64,
    DataType.STRING: CodecType.STRING,
}
INT_RANGE: dict[DataType, tuple[int, int]] = {
    DataType.INT16: (-(2**15), 2**15 - 1),
    DataType.UINT16: (0, 2**16 - 1),
    DataType.INT32: (-(2**31), 2**31 - 1),
    DataType.UINT32: (0, 2**32 - 1),
    DataType.INT64: (-(2**63), 2**63 - 1),
    DataType.UINT64: (0, 2**64 - 1),
}
WORDS_REVERSED = {WordOrder.CDAB, WordOrder.DCBA}
BYTES_SWAPPED = {WordOrder.BADC, WordOrder.DCBA}
# pymodbus function codes that address each table in the simulator's datastore.
FUNCTION_CODE: dict[ModbusTable, int] = {
    ModbusTable.COIL: 1,
    ModbusTable.DISCRETE: 2,
    ModbusTable.HOLDING: 3,
    ModbusTable.INPUT: 4,
}
TABLES = (ModbusTable.COIL, ModbusTable.DISCRETE, ModbusTable.HOLDING, ModbusTable.INPUT)


def _swap_bytes(register: int) -> int:
    return ((register & 0xFF) << 8) | (register >> 8)


def raw_value(point: ModbusPoint, value: PointValue | str) -> int | float | str:
    """The number the device stores for an engineering value (scaling undone)."""
    if point.type is DataType.STRING:
        return str(value)
    raw = (float(value) - point.offset) / point.scale
    if point.type in INT_RANGE:
        lo, hi = INT_RANGE[point.type]
        return min(max(round(raw), lo), hi)
    return raw


def encode_registers(point: ModbusPoint, value: PointValue | str) -> list[int]:
    """Registers of one non-bool register point, in the point's word and byte order."""
    raw = raw_value(point, value)
    order = point.order
    if point.type is DataType.STRING:
        regs = ModbusClientMixin.convert_to_registers(str(raw), CodecType.STRING)
        assert point.length is not None
        regs = (regs + [0] * point.length)[: point.length]
    else:
        word_order: Literal["big", "little"] = "little" if order in WORDS_REVERSED else "big"
        regs = ModbusClientMixin.convert_to_registers(raw, CODEC_TYPE[point.type], word_order)
    if order in BYTES_SWAPPED:
        regs = [_swap_bytes(r) for r in regs]
    return regs


def encode_image(
    profile: ModbusProfile, values: Mapping[str, PointValue | str]
) -> dict[ModbusTable, TableImage]:
    """Every table's served values for the given point values; absent points serve zero."""
    image: dict[ModbusTable, TableImage] = {t: {} for t in TABLES}
    for p in profile.points:
        value = values.get(p.name, 0)
        table = image[p.table]
        if p.table in (ModbusTable.COIL, ModbusTable.DISCRETE):
            table[p.address] = bool(value)
        elif p.type is DataType.BOOL:
            assert p.bit is not None
            word = int(table.get(p.address, 0))
            mask = 1 << p.bit
            table[p.address] = (word | mask) if value else (word & ~mask)
        else:
            for i, reg in enumerate(encode_registers(p, value)):
                table[p.address + i] = reg
    return image


def contiguous_runs(table: TableImage) -> list[tuple[int, list[int | bool]]]:
    """(start address, values) for each run of consecutive addresses, in address order."""
    runs: list[tuple[int, list[int | bool]]] = []
    for address in sorted(table):
        if runs and runs[-1][0] + len(runs[-1][1]) == address:
            runs[-1][1].append(table[address])
        else:
            runs.append((address, [table[address]]))
    return runs


def _register_blocks(table: TableImage, fill_gaps: bool) -> list[SimData]:
    if not table:
        # The datastore needs a block per table: one invalid register at the top of the
        # address space makes every read of this table an illegal-address exception.
        return [SimData(address=65534, datatype=SimType.INVALID)]
    if fill_gaps:
        lo, hi = min(table), max(table)
        regs = [int(table.get(a, 0)) for a in range(lo, hi + 1)]
        return [SimData(address=lo, values=regs, datatype=SimType.REGISTERS)]
    return [
        SimData(address=start, values=[int(v) for v in run], datatype=SimType.REGISTERS)
        for start, run in contiguous_runs(table)
    ]


def _bit_blocks(table: TableImage) -> list[SimData]:
    if not table:
        return [SimData(address=65520, values=[False] * 16, datatype=SimType.BITS)]
    return [
        SimData(address=start, values=[bool(v) for v in run], datatype=SimType.BITS)
        for start, run in contiguous_runs(table)
    ]


def build_sim_device(
    profile: ModbusProfile,
    unit: int,
    values: Mapping[str, PointValue | str],
    *,
    fill_gaps: bool = True,
) -> SimDevice:
    """A pymodbus SimDevice with four separate tables laid out from the profile.

    With fill_gaps, unused registers between a table's points read as zero (as on most
    controllers); without, reading them is an illegal-address exception. Unused bits
    between bit points always read as False (the datastore keeps bits in 16-bit words)."""
    image = encode_image(profile, values)
    return SimDevice(
        id=unit,
        simdata=(
            _bit_blocks(image[ModbusTable.COIL]),
            _bit_blocks(image[ModbusTable.DISCRETE]),
            _register_blocks(image[ModbusTable.HOLDING], fill_gaps),
            _register_blocks(image[ModbusTable.INPUT], fill_gaps),
        ),
    )
