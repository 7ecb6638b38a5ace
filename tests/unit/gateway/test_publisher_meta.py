from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from facility.profiles import ModbusPoint, load_profile
from facility.site import Device, DeviceConfig
from gateway.publisher import birth_of, value_type
from gateway.reading import Reading

ROOT = Path(__file__).resolve().parents[3]


def test_value_type_follows_what_the_decoder_produces() -> None:
    def mp(**kw: object) -> ModbusPoint:
        return ModbusPoint(name="p", table="holding", address=0, **kw)  # type: ignore[arg-type]

    assert value_type(mp(type="int16")) == "int"
    assert value_type(mp(type="int16", scale=0.1)) == "float"
    assert value_type(mp(type="uint32", offset=-40)) == "float"
    assert value_type(mp(type="float32")) == "float"
    assert value_type(mp(type="bool", bit=3)) == "bool"
    assert value_type(mp(type="string", length=4)) == "string"


def test_birth_carries_every_point_and_the_snapshot() -> None:
    profile = load_profile(ROOT / "profiles" / "elevator.yaml")
    config = DeviceConfig.model_validate(
        {"id": "a-elevator-1", "type": "elevator", "profile": "elevator",
         "address": {"protocol": "modbus", "port": 1502}})
    device = Device(config=config, building="a", gateway="gw-a", profile=profile)
    ts = datetime(2025, 1, 1, tzinfo=UTC)
    birth = birth_of(device, Reading(ts=ts, values={"car_floor": 3}), "s1")
    assert set(birth.points) == {p.name for p in profile.points}
    assert birth.points["load_kg"].unit == "kg" and "load" in birth.points["load_kg"].tags
    assert birth.values == {"car_floor": 3} and birth.ts == ts
    assert (birth.profile, birth.profile_version, birth.building) == ("elevator", 1, "a")
