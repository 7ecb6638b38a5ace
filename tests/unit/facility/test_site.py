from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from facility.config_errors import ConfigError
from facility.site import load_site

ROOT = Path(__file__).resolve().parents[3]


def test_demo_site_loads_every_device_with_its_profile() -> None:
    site = load_site(ROOT / "sites" / "demo.yaml")
    assert site.id == "demo"
    assert sorted(site.devices) == sorted(
        [f"{b}-{d}" for b in "ab" for d in ("elevator-1", "elevator-2", "pumps", "switchgear",
                                             "firepanel", "leak")] + ["a-gas"]
    )
    assert site.devices["a-firepanel"].profile.protocol == "bacnet"
    assert site.devices["b-elevator-2"].gateway == "gw-b"


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _site(**device: object) -> dict:
    dev = {"id": "x-elevator", "type": "elevator", "profile": "elevator",
           "address": {"protocol": "modbus", "port": 1502}} | device
    return {"site": "s", "gateways": [{"id": "gw"}],
            "buildings": [{"id": "x", "gateway": "gw", "devices": [dev]}]}


def test_error_names_file_and_path_of_bad_entry(tmp_path: Path) -> None:
    path = _write(tmp_path, _site(address={"protocol": "modbus", "port": "not-a-port"}))
    with pytest.raises(ConfigError) as err:
        load_site(path, profiles_dir=ROOT / "profiles")
    assert str(path) in str(err.value)
    assert "buildings[0].devices[0].address" in str(err.value)


def test_unknown_profile_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _site(profile="nosuch"))
    with pytest.raises(ConfigError, match=r"buildings\[0\]\.devices\[0\]\.profile"):
        load_site(path, profiles_dir=ROOT / "profiles")


def test_protocol_mismatch_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, _site(profile="firepanel"))
    with pytest.raises(ConfigError, match="speaks bacnet"):
        load_site(path, profiles_dir=ROOT / "profiles")


def test_duplicate_address_is_refused(tmp_path: Path) -> None:
    data = _site()
    data["buildings"][0]["devices"].append(
        {"id": "x-elevator-b", "type": "elevator", "profile": "elevator",
         "address": {"protocol": "modbus", "port": 1502}})
    with pytest.raises(ConfigError, match="share address"):
        load_site(_write(tmp_path, data), profiles_dir=ROOT / "profiles")


def test_undefined_gateway_is_refused(tmp_path: Path) -> None:
    data = _site()
    data["buildings"][0]["gateway"] = "gw-z"
    with pytest.raises(ConfigError, match="gw-z"):
        load_site(_write(tmp_path, data), profiles_dir=ROOT / "profiles")


def test_gateway_and_modbus_options_default_and_validate(tmp_path: Path) -> None:
    data = _site(modbus={"max_registers": 32, "one_request_per_point": True, "pause_ms": 20})
    data["gateways"] = [{"id": "gw", "poll_classes": {"normal": 10}, "metrics_port": 9101,
                         "buffer": {"max_messages": 5000}}]
    site = load_site(_write(tmp_path, data), profiles_dir=ROOT / "profiles")
    opts = site.devices["x-elevator"].config.modbus_options
    assert (opts.max_registers, opts.one_request_per_point, opts.pause_ms, opts.fill) == (
        32, True, 20, 10)
    gw = site.gateway("gw")
    assert (gw.poll_classes.fast, gw.poll_classes.normal, gw.poll_classes.slow) == (1, 10, 60)
    assert gw.buffer.max_messages == 5000 and gw.metrics_port == 9101
    assert gw.integrity_poll_s == 60.0 and gw.cov_lifetime_s == 300
    data["gateways"] = [{"id": "gw", "integrity_poll_s": 0.5}]
    with pytest.raises(ConfigError, match="integrity_poll_s"):
        load_site(_write(tmp_path, data), profiles_dir=ROOT / "profiles")
    bad = _site(modbus={"max_registers": 126})
    with pytest.raises(ConfigError, match="max_registers"):
        load_site(_write(tmp_path, bad), profiles_dir=ROOT / "profiles")


def test_modbus_options_on_a_bacnet_device_are_refused(tmp_path: Path) -> None:
    data = _site(profile="firepanel", type="fire_panel", modbus={"pause_ms": 5},
                 address={"protocol": "bacnet", "port": 47808, "device_instance": 7})
    with pytest.raises(ConfigError, match="not a Modbus device"):
        load_site(_write(tmp_path, data), profiles_dir=ROOT / "profiles")


def test_point_deadbands_and_event_points() -> None:
    from facility.profiles import BacnetPoint, ModbusPoint

    with pytest.raises(ValueError, match="not both"):
        ModbusPoint(name="p", table="holding", address=0, deadband=1,  # type: ignore[arg-type]
                    deadband_percent=2)
    assert ModbusPoint(name="p", table="discrete", address=0, type="bool").is_event  # type: ignore[arg-type]
    assert ModbusPoint(name="p", table="holding", address=0, tags=("fault",)).is_event  # type: ignore[arg-type]
    assert not ModbusPoint(name="p", table="holding", address=0, tags=("energy",)).is_event  # type: ignore[arg-type]
    assert BacnetPoint(name="z", object_type="binaryInput", instance=1, type="bool").is_event


def test_profile_display_names_and_enum_labels(tmp_path: Path) -> None:
    from facility.profiles import load_profile

    elevator = load_profile(ROOT_PROFILES / "elevator.yaml")
    fault = next(p for p in elevator.points if p.name == "fault_code")
    assert (fault.label, fault.label_en) == ("故障代码", "Fault code")
    assert fault.enum_labels is not None
    assert (fault.enum_labels[3].zh, fault.enum_labels[3].en) == ("安全回路动作", "safety circuit")
    bad = tmp_path / "bad.yaml"
    bad.write_text("profile: bad\nprotocol: modbus\npoints:\n  - {name: x, table: holding,"
                   " address: 0, enum_labels: {1: {zh: 一}}}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"points\[0\]\.enum_labels\[1\]\.en: Field required"):
        load_profile(bad)


ROOT_PROFILES = Path(__file__).resolve().parents[3] / "profiles"
