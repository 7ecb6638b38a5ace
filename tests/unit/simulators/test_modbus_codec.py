"""Modbus layout: values encoded by pymodbus' codec decode right with plain struct."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from facility.profiles import ModbusProfile, ModbusTable, load_profile
from simulators.modbus_codec import build_sim_device, contiguous_runs, encode_image

PROFILES = Path(__file__).resolve().parents[3] / "profiles"


def profile(*points: dict[str, object]) -> ModbusProfile:
    return ModbusProfile.model_validate(
        {"profile": "t", "protocol": "modbus", "points": list(points)}
    )


def regs_to_bytes(regs: list[int]) -> bytes:
    return b"".join(struct.pack(">H", r) for r in regs)


@pytest.mark.parametrize(
    ("order", "to_abcd"),
    [
        ("ABCD", lambda b: b),
        ("CDAB", lambda b: b[2:4] + b[0:2]),
        ("BADC", lambda b: bytes([b[1], b[0], b[3], b[2]])),
        ("DCBA", lambda b: b[::-1]),
    ],
)
def test_float32_word_orders(order: str, to_abcd: object) -> None:
    prof = profile(
        {"name": "x", "table": "input", "address": 10, "type": "float32", "order": order}
    )
    image = encode_image(prof, {"x": 1234.5})[ModbusTable.INPUT]
    wire = regs_to_bytes([image[10], image[11]])
    assert struct.unpack(">f", to_abcd(wire))[0] == 1234.5  # type: ignore[operator]
    if order != "ABCD":
        assert struct.unpack(">f", wire)[0] != 1234.5


def test_int32_cdab_and_int16_byte_swapped() -> None:
    prof = profile(
        {"name": "a", "table": "holding", "address": 0, "type": "int32", "order": "CDAB"},
        {"name": "b", "table": "holding", "address": 2, "type": "int16", "order": "BADC"},
    )
    image = encode_image(prof, {"a": -70000, "b": 0x1234})[ModbusTable.HOLDING]
    assert struct.unpack(">i", regs_to_bytes([image[1], image[0]]))[0] == -70000
    assert image[2] == 0x3412


def test_scale_and_offset_are_undone_and_integers_rounded_and_clamped() -> None:
    prof = profile(
        {"name": "speed", "table": "holding", "address": 0, "type": "int16", "scale": 0.01},
        {
            "name": "temp",
            "table": "holding",
            "address": 1,
            "type": "uint16",
            "scale": 0.1,
            "offset": -40,
        },
        {"name": "big", "table": "holding", "address": 2, "type": "uint16"},
        {"name": "neg", "table": "holding", "address": 3, "type": "int16"},
    )
    image = encode_image(prof, {"speed": -1.6, "temp": 21.5, "big": 70000, "neg": -2})[
        ModbusTable.HOLDING
    ]
    assert struct.unpack(">h", struct.pack(">H", int(image[0])))[0] == -160
    assert image[1] == 615  # (21.5 + 40) / 0.1
    assert image[2] == 65535
    assert image[3] == 0xFFFE


def test_bits_in_a_register_and_strings() -> None:
    prof = profile(
        {"name": "f0", "table": "holding", "address": 5, "type": "bool", "bit": 0},
        {"name": "f3", "table": "holding", "address": 5, "type": "bool", "bit": 3},
        {"name": "f4", "table": "holding", "address": 5, "type": "bool", "bit": 4},
        {"name": "model", "table": "holding", "address": 6, "type": "string", "length": 3},
    )
    image = encode_image(prof, {"f0": True, "f3": True, "f4": False, "model": "KONE"})[
        ModbusTable.HOLDING
    ]
    assert image[5] == 0b1001
    assert regs_to_bytes([image[6], image[7], image[8]]) == b"KONE\x00\x00"


def test_bit_tables_and_missing_values() -> None:
    prof = profile(
        {"name": "a", "table": "discrete", "address": 0, "type": "bool"},
        {"name": "b", "table": "discrete", "address": 3, "type": "bool"},
        {"name": "c", "table": "coil", "address": 1, "type": "bool"},
    )
    image = encode_image(prof, {"b": True})
    assert image[ModbusTable.DISCRETE] == {0: False, 3: True}
    assert image[ModbusTable.COIL] == {1: False}


def test_contiguous_runs() -> None:
    assert contiguous_runs({4: 1, 0: 7, 1: 8, 5: 2, 9: 3}) == [(0, [7, 8]), (4, [1, 2]), (9, [3])]
    assert contiguous_runs({}) == []


@pytest.mark.parametrize("name", ["elevator", "pump_set", "switchgear"])
def test_every_shipped_profile_builds_a_device(name: str) -> None:
    prof = load_profile(PROFILES / f"{name}.yaml")
    assert isinstance(prof, ModbusProfile)
    for fill_gaps in (True, False):
        device = build_sim_device(prof, 7, {}, fill_gaps=fill_gaps)
        assert device.id == 7
