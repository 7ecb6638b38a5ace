from __future__ import annotations

from typing import Any

from facility.profiles import ModbusPoint, ModbusTable
from gateway.plan import MAX_BITS, MAX_REGISTERS, plan_reads, split


def reg(name: str, address: int, type_: str = "uint16", table: str = "holding", **kw: Any
        ) -> ModbusPoint:
    return ModbusPoint(name=name, table=table, address=address, type=type_, **kw)


def bit(name: str, address: int, table: str = "discrete") -> ModbusPoint:
    return ModbusPoint(name=name, table=table, address=address, type="bool")


def spans(blocks: list[Any]) -> list[tuple[str, int, int]]:
    return [(str(b.table), b.address, b.count) for b in blocks]


def test_adjacent_and_small_gaps_merge_into_one_request() -> None:
    points = [reg("a", 0), reg("b", 1, "float32"), reg("c", 13)]  # gap 3..12 = 10 registers
    assert spans(plan_reads(points)) == [("holding", 0, 14)]


def test_gap_over_fill_splits() -> None:
    points = [reg("a", 0), reg("c", 12)]  # gap of 11
    assert spans(plan_reads(points)) == [("holding", 0, 1), ("holding", 12, 1)]
    assert spans(plan_reads(points, fill=11)) == [("holding", 0, 13)]
    assert spans(plan_reads([reg("a", 0), reg("b", 2)], fill=0)) == [
        ("holding", 0, 1), ("holding", 2, 1)]


def test_tables_are_planned_separately_and_points_are_sorted() -> None:
    points = [reg("h", 5), bit("d1", 1), reg("i", 0, table="input"), bit("d0", 0), reg("h0", 0)]
    blocks = plan_reads(points)
    assert spans(blocks) == [("discrete", 0, 2), ("holding", 0, 6), ("input", 0, 1)]
    assert [p.name for p in blocks[1].points] == ["h0", "h"]


def test_never_more_than_125_registers() -> None:
    points = [reg(f"p{i}", i * 4, "float64") for i in range(100)]  # 400 contiguous registers
    blocks = plan_reads(points)
    assert all(b.count <= MAX_REGISTERS for b in blocks)
    assert sum(len(b.points) for b in blocks) == 100
    assert spans(blocks)[0] == ("holding", 0, 124)  # 31 float64 fit, the 32nd would not


def test_never_more_than_2000_bits() -> None:
    points = [bit(f"b{i}", i) for i in range(4500)]
    blocks = plan_reads(points)
    assert [b.count for b in blocks] == [MAX_BITS, MAX_BITS, 500]


def test_a_point_never_straddles_blocks() -> None:
    points = [reg("a", 0, "float32"), reg("s", 2, "string", length=120), reg("z", 122, "uint32")]
    for b in plan_reads(points):
        for p in b.points:
            s = b.slice_of(p)
            assert 0 <= s.start and s.stop <= b.count


def test_bits_of_one_register_share_the_register() -> None:
    points = [reg("x", 4, "bool", bit=0), reg("y", 4, "bool", bit=1), reg("z", 5)]
    assert spans(plan_reads(points)) == [("holding", 4, 2)]


def test_split_halves_by_points_and_stops_at_one() -> None:
    block = plan_reads([reg("a", 0), reg("b", 1), reg("c", 5), reg("d", 9, "uint32")])[0]
    halves = split(block)
    assert spans(halves) == [("holding", 0, 2), ("holding", 5, 6)]
    one = split(halves[0])
    assert spans(one) == [("holding", 0, 1), ("holding", 1, 1)]
    assert split(one[0]) == []
    assert one[0].table is ModbusTable.HOLDING


def test_one_request_per_point_for_devices_that_refuse_multi_point_reads() -> None:
    from facility.profiles import ModbusPoint
    from gateway.plan import plan_reads as plan

    pts = [ModbusPoint(name=f"p{i}", table="holding", address=i, type="uint16")  # type: ignore[arg-type]
           for i in range(5)]
    assert len(plan(pts)) == 1
    blocks = plan(pts, one_per_point=True)
    assert [(b.address, b.count, len(b.points)) for b in blocks] == [(i, 1, 1) for i in range(5)]
    assert len(plan(pts, max_registers=2)) == 3  # a device's maximum request size
