"""Plans the Modbus reads of one device; pure, no I/O.

Points of one table are sorted by address and merged into as few requests as possible:
a gap of up to ``fill`` unused registers (or bits) between points is read and discarded
rather than paid for with another request, and no request exceeds the protocol limits of
125 registers or 2000 bits. ``split`` halves a block by its points, so that when a device
refuses a block (illegal data address) the retry narrows down to the one bad point."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from facility.profiles import ModbusPoint, ModbusTable

MAX_REGISTERS = 125
MAX_BITS = 2000
DEFAULT_FILL = 10
BIT_TABLES = (ModbusTable.COIL, ModbusTable.DISCRETE)


@dataclass(frozen=True, slots=True)
class ReadBlock:
    """One request: ``count`` registers (or bits) of ``table`` from ``address``."""

    table: ModbusTable
    address: int
    count: int
    points: tuple[ModbusPoint, ...]

    def slice_of(self, point: ModbusPoint) -> slice:
        """Where ``point`` sits in this block's response."""
        start = point.address - self.address
        return slice(start, start + point.count)


def limit_of(table: ModbusTable) -> int:
    return MAX_BITS if table in BIT_TABLES else MAX_REGISTERS


def block_of(points: Iterable[ModbusPoint]) -> ReadBlock:
    """The smallest block covering ``points`` (all of one table)."""
    pts = tuple(sorted(points, key=lambda p: (p.address, p.bit or 0)))
    start = pts[0].address
    end = max(p.address + p.count for p in pts)
    return ReadBlock(pts[0].table, start, end - start, pts)


def plan_reads(
    points: Iterable[ModbusPoint], *, fill: int = DEFAULT_FILL,
    max_registers: int = MAX_REGISTERS, max_bits: int = MAX_BITS,
    one_per_point: bool = False,
) -> list[ReadBlock]:
    """Requests covering every point, in table then address order (``one_per_point``: one
    request per point, for devices that refuse any multi-point read)."""
    if one_per_point:
        return [block_of([p]) for p in sorted(points, key=lambda p: (p.table, p.address,
                                                                       p.bit or 0))]
    by_table: dict[ModbusTable, list[ModbusPoint]] = {}
    for p in points:
        by_table.setdefault(p.table, []).append(p)
    blocks: list[ReadBlock] = []
    for table in sorted(by_table):
        limit = max_bits if table in BIT_TABLES else max_registers
        current: list[ModbusPoint] = []
        start = end = 0
        for p in sorted(by_table[table], key=lambda p: (p.address, p.bit or 0)):
            p_end = p.address + p.count
            if current and p.address - end <= fill and max(end, p_end) - start <= limit:
                current.append(p)
                end = max(end, p_end)
                continue
            if current:
                blocks.append(block_of(current))
            current, start, end = [p], p.address, p_end
        if current:
            blocks.append(block_of(current))
    return blocks


def split(block: ReadBlock) -> list[ReadBlock]:
    """Two blocks with half the points each (a one-point block cannot be split: [])."""
    if len(block.points) < 2:
        return []
    half = len(block.points) // 2
    return [block_of(block.points[:half]), block_of(block.points[half:])]
