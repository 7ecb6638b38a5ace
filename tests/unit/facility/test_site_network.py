"""The gateway's network settings in the site file: BACnet/IP bind, BBMD registration, RTU
lines and the units and BACnet devices that use them, refused with the entry's path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from facility.config_errors import ConfigError
from facility.site import BacnetAddress, check_gateway_reach, load_site
from facility.site_network import RtuLineConfig

ROOT = Path(__file__).resolve().parents[3]


def _load(tmp_path: Path, gateway: dict[str, Any], devices: list[dict[str, Any]]) -> Any:
    raw = {"site": "s", "profiles_dir": str(ROOT / "profiles"),
           "gateways": [{"id": "gw", **gateway}],
           "buildings": [{"id": "b", "gateway": "gw", "devices": devices}]}
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_site(path)


def _unit(unit: int, line: str = "rs485-1") -> dict[str, Any]:
    return {"id": f"lift-{unit}", "type": "elevator", "profile": "elevator",
            "address": {"protocol": "modbus-rtu", "line": line, "unit": unit}}


def _panel(address: dict[str, Any]) -> dict[str, Any]:
    return {"id": "p", "type": "fire_panel", "profile": "firepanel",
            "address": {"protocol": "bacnet", "device_instance": 9, **address}}


LINE = {"id": "rs485-1", "serial": "/dev/ttyUSB0", "baudrate": 9600, "parity": "E"}


def test_rtu_units_on_a_line_of_their_gateway(tmp_path: Path) -> None:
    site = _load(tmp_path, {"lines": [LINE]}, [_unit(1), _unit(2)])
    assert site.devices["lift-2"].profile.protocol == "modbus"
    assert site.gateway("gw").line("rs485-1").parity == "E"


@pytest.mark.parametrize(("gateway", "devices", "message"), [
    ({"lines": [LINE]}, [_unit(1, "rs485-9")], "names RTU line rs485-9, which gateway gw"),
    ({"lines": [LINE]}, [_unit(3), {**_unit(3), "id": "other"}], "share address"),
    ({"lines": [LINE, LINE]}, [], "an RTU line id appears twice"),
    ({"lines": [{"id": "l", "serial": "/dev/ttyS0", "server": "10.0.0.1:4001"}]}, [],
     "exactly one of serial"),
    ({"lines": [{"id": "l", "server": "10.0.0.1"}]}, [], "needs a port"),
    ({"bacnet": {"address": "192.168.10.5"}}, [], "needs its prefix length"),
    ({"bacnet": {"address": "192.168.10.5/24", "interface": "eth0"}}, [], "not both"),
    ({"bacnet": {"foreign_device": {"bbmd": "10.0.0.1", "ttl_s": 5}}}, [],
     "gateways[0].bacnet.foreign_device.ttl_s"),
    ({}, [{"id": "p", "type": "fire_panel", "profile": "firepanel",
           "address": {"protocol": "bacnet", "device_instance": 9}}],
     "addressed by device instance alone: gateway gw needs bacnet.address"),
])
def test_bad_network_settings_are_refused_with_their_path(
    tmp_path: Path, gateway: dict[str, Any], devices: list[dict[str, Any]], message: str,
) -> None:
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, gateway, devices)
    assert message in str(err.value)


@pytest.mark.parametrize(("gateway", "address"), [
    ({}, {"port": 47811}),  # a port alone: 127.0.0.1
    ({}, {"host": "127.0.0.2"}),
    ({}, {"host": "localhost"}),
    ({"bacnet": {"interface": "eth0"}}, {"host": "192.168.10.20"}),
    ({"bacnet": {"address": "192.168.10.5/24"}}, {"host": "192.168.10.20"}),
])
def test_bacnet_devices_the_gateway_can_reach_load(
    tmp_path: Path, gateway: dict[str, Any], address: dict[str, Any],
) -> None:
    site = _load(tmp_path, gateway, [_panel(address)])
    check_gateway_reach(site, "gw")
    assert site.devices["p"].config.address.how == "host"


@pytest.mark.parametrize(("gateway", "host", "message"), [
    ({}, "192.168.10.20",
     "buildings[0].devices[0].address.host: device p is at 192.168.10.20, off loopback, but "
     "gateway gw has its BACnet port on 127.0.0.1: add bacnet.interface"),
    ({"bacnet": {"port": 47809}}, "panel.example",
     "buildings[0].devices[0].address.host: device p is at panel.example, off loopback"),
])
def test_a_gateway_refuses_bacnet_devices_off_loopback_it_cannot_reach(
    tmp_path: Path, gateway: dict[str, Any], host: str, message: str,
) -> None:
    """The gateway refuses such a site at load; the simulators and the services that only
    read the file (they serve or store those devices wherever they are) load it."""
    site = _load(tmp_path, gateway, [_panel({"host": host})])
    with pytest.raises(ConfigError) as err:
        check_gateway_reach(site, "gw")
    assert message in str(err.value)


def test_bacnet_device_addressing() -> None:
    assert BacnetAddress(device_instance=7).how == "instance"
    assert BacnetAddress.model_validate({"port": 47811, "device_instance": 7}).host == \
        "127.0.0.1"
    routed = BacnetAddress(network=5, mac="0x0c", device_instance=7)
    assert routed.how == "routed" and routed.port == 47808
    with pytest.raises(ValueError, match="both network and mac"):
        BacnetAddress(network=5, device_instance=7)
    with pytest.raises(ValueError, match="not both"):
        BacnetAddress(host="10.0.0.5", network=5, mac="12", device_instance=7)


def test_line_timing_follows_the_standard() -> None:
    even = RtuLineConfig(id="l", serial="/dev/ttyS0", baudrate=9600, parity="E")
    assert even.bits_per_char == 11
    assert even.gap_s == pytest.approx(3.5 * 11 / 9600)
    fast = RtuLineConfig(id="l", serial="/dev/ttyS0", baudrate=115200)
    assert fast.gap_s == 0.00175
