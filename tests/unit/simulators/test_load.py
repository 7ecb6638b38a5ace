"""Load mode without I/O: the site layout over ports and unit ids, and the load values."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from facility.profiles import ModbusProfile, load_profile
from facility.site import parse_site
from simulators.load import LoadLayout, build_load_site, choose_ports, port_count
from simulators.models.load_meter import LoadValues

ROOT = Path(__file__).resolve().parents[3]


def test_the_load_site_spreads_devices_over_ports_and_units() -> None:
    layout = LoadLayout(modbus_ports=(6000, 6001, 6002), bacnet_ports=(7000, 7001))
    raw = build_load_site(45, layout, units_per_port=20, gateways=2)
    config = parse_site(raw, Path("load.yaml"))
    devices = [d for b in config.buildings for d in b.devices]
    modbus = [d for d in devices if d.address.protocol == "modbus"]
    panels = [d for d in devices if d.address.protocol == "bacnet"]
    assert len(modbus) == 45 and len(panels) == 2
    by_port: dict[int, list[int]] = {}
    for d in modbus:
        by_port.setdefault(d.address.port, []).append(d.address.unit)  # type: ignore[union-attr]
    assert by_port == {6000: list(range(1, 21)), 6001: list(range(1, 21)), 6002: [1, 2, 3, 4, 5]}
    assert {b.gateway for b in config.buildings} == {"gw-load-1", "gw-load-2"}
    assert Path(config.profiles_dir).is_absolute()
    assert {d.profile for d in modbus} == {"load_meter"}


def test_ports_from_a_base_skip_the_taken_ones() -> None:
    assert choose_ports(3, socket.SOCK_DGRAM, 7000, taken=[7001]) == [7000, 7002, 7003]
    assert port_count(2000, 20) == 100 and port_count(2001, 20) == 101


def test_the_load_profile_has_fifty_points_of_mixed_types() -> None:
    profile = load_profile(ROOT / "profiles" / "load_meter.yaml")
    assert isinstance(profile, ModbusProfile)
    assert len(profile.points) == 50
    assert len({p.type for p in profile.points}) >= 7
    assert {p.order for p in profile.points} >= {"ABCD", "CDAB"}


def test_load_values_wobble_the_measurements_and_count_energy_up() -> None:
    profile = load_profile(ROOT / "profiles" / "load_meter.yaml")
    assert isinstance(profile, ModbusProfile)
    values = LoadValues(profile, index=3)
    initial = values.initial()
    assert initial["voltage_l1"] == 230.0 and initial["voltage_l12"] == 400.0
    assert initial["breaker_closed"] is True and initial["overvoltage_alarm"] is False
    assert initial["serial_number"] == "LM000003"
    live_names = {p.name for p in values.live_points}
    assert {"voltage_l1", "energy_import_kwh", "power_factor"} <= live_names
    assert not live_names & {"serial_number", "ct_ratio", "breaker_closed"}
    assert len(live_names) < len(profile.points)
    early, later = values.live(10.0), values.live(3610.0)
    assert 225 <= float(early["voltage_l1"]) <= 235
    assert float(early["power_factor"]) <= 1.0
    assert int(later["energy_import_kwh"]) - int(early["energy_import_kwh"]) == 25
    assert early != LoadValues(profile, index=4).live(10.0)


def test_bad_load_parameters_are_refused() -> None:
    import asyncio

    from simulators.load import run_load

    with pytest.raises(ValueError):
        asyncio.run(run_load(0))
