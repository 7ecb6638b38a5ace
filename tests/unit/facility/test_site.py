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
        f"{b}-{d}" for b in "ab" for d in ("elevator-1", "elevator-2", "pumps", "switchgear",
                                            "firepanel")
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
