from __future__ import annotations

import pytest

from gateway.schedule import Schedule

EVERY = {"fast": 1, "normal": 5, "slow": 60}


def test_fast_every_tick_normal_every_fifth_slow_every_sixtieth() -> None:
    s = Schedule.of(["fast", "normal", "slow"], EVERY)
    assert s.due(0) == {"fast", "normal", "slow"}  # the first poll reads everything
    assert s.due(1) == {"fast"}
    assert s.due(5) == {"fast", "normal"}
    assert s.due(60) == {"fast", "normal", "slow"}
    assert [t for t in range(1, 121) if "slow" in s.due(t)] == [60, 120]


def test_phase_staggers_devices_and_a_due_snapshot_reads_every_point() -> None:
    a = Schedule.of(["fast", "normal"], EVERY, phase=0)
    b = Schedule.of(["fast", "normal"], EVERY, phase=2)
    assert [t for t in range(1, 11) if "normal" in a.due(t)] == [5, 10]
    assert [t for t in range(1, 11) if "normal" in b.due(t)] == [3, 8]
    assert a.due(1, snapshot=True) == {"fast", "normal"}


def test_a_device_without_fast_points_reads_nothing_on_most_ticks() -> None:
    s = Schedule.of(["slow"], EVERY)
    assert s.due(1) == frozenset()
    with pytest.raises(ValueError, match="no period"):
        Schedule.of(["fast", "turbo"], EVERY)
