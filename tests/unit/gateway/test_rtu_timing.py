"""What one read costs on an RTU line: characters on the wire and the ideal poll rate."""

from __future__ import annotations

import pytest

from facility.profiles import ModbusTable
from facility.site_network import RtuLineConfig
from gateway.rtu_line import frame_chars, ideal_polls_per_s
from simulators.rtu_server import reply_chars


def test_frame_characters_of_reads() -> None:
    assert frame_chars(ModbusTable.HOLDING, 10) == 8 + 5 + 20
    assert frame_chars(ModbusTable.DISCRETE, 9) == 8 + 5 + 2
    assert reply_chars(3, 10) == 25 and reply_chars(2, 9) == 7  # the simulator agrees


def test_ideal_poll_rate_is_the_wire_time_of_its_frames_and_gaps() -> None:
    line = RtuLineConfig(id="l", server="127.0.0.1:4001", baudrate=9600)  # 8N1: 10 bits
    chars = (8 + 5 + 38) + (8 + 5 + 1)
    expected = 1 / (chars * 10 / 9600 + 4 * 3.5 * 10 / 9600)
    assert ideal_polls_per_s(line, [(ModbusTable.INPUT, 19), (ModbusTable.DISCRETE, 3)]) == \
        pytest.approx(expected)
