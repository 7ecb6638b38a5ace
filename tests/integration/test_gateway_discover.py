"""`facility gateway discover` against the simulators' BACnet fire panel and Modbus elevator:
the draft site loads, names the BACnet device instance learnt from the I-Am, and lists the
panel's objects and the elevator's readable registers and bits as points."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from facility.ports import free_port
from facility.profiles import BacnetProfile, ModbusProfile
from facility.site import load_site
from gateway.discover import run_discover
from simulators.bacnet_server import BacnetDeviceServer
from simulators.misbehaviour import Behaviour
from simulators.modbus_server import ModbusDeviceServer
from tests.integration.gateway_support import write_site
from tests.integration.test_gateway import ELEVATOR


async def test_discover_writes_a_draft_that_loads(tmp_path: Path, site_id: str) -> None:
    bport, mport = free_port(socket.SOCK_DGRAM), free_port()
    site = write_site(tmp_path, site_id, (
        f"      - {{id: panel, type: fire_panel, profile: firepanel, address: {{protocol: "
        f"bacnet, port: {bport}, device_instance: 4321}}}}\n"
        f"      - {{id: lift, type: elevator, profile: elevator, address: {{protocol: modbus,"
        f" port: {mport}, unit: 3}}}}\n"))
    panel_values = {p.name: False for p in site.devices["panel"].profile.points}
    async with (BacnetDeviceServer(site.devices["panel"], panel_values),
                ModbusDeviceServer(site.devices["lift"], ELEVATOR)):
        await run_discover([f"127.0.0.1:{bport}"], [f"127.0.0.1:{mport}/3"], tmp_path / "out",
                           timeout_s=1.0)
    draft = load_site(tmp_path / "out" / "site.yaml")
    bacnet = draft.devices["bacnet-4321"]
    assert bacnet.config.address.model_dump()["device_instance"] == 4321
    assert isinstance(bacnet.profile, BacnetProfile)
    found = {(p.name, p.object_type, p.instance, p.type) for p in bacnet.profile.points}
    expected = {(p.name, p.object_type, p.instance, p.type)
                for p in site.devices["panel"].profile.points}
    assert found == expected  # objectName is the point name in the simulator
    modbus = draft.devices[f"modbus-{mport}-3"]
    assert isinstance(modbus.profile, ModbusProfile)
    names = {p.name for p in modbus.profile.points}
    assert {"discrete_0", "discrete_3", "holding_0", "holding_8", "holding_9"} <= names


async def test_discover_reads_the_object_list_element_by_element_when_it_cannot_segment(
    tmp_path: Path, site_id: str, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.discover_bacnet")
    bport = free_port(socket.SOCK_DGRAM)
    site = write_site(tmp_path, site_id, (
        f"      - {{id: panel, type: fire_panel, profile: firepanel, address: {{protocol: "
        f"bacnet, port: {bport}, device_instance: 4322}}}}\n"))
    values = {p.name: False for p in site.devices["panel"].profile.points}
    small = Behaviour(segmentation=False, max_apdu=50)  # the whole list does not fit
    async with BacnetDeviceServer(site.devices["panel"], values, behaviour=small):
        await run_discover([f"127.0.0.1:{bport}"], [], tmp_path / "out", timeout_s=1.0)
    draft = load_site(tmp_path / "out" / "site.yaml")
    points = draft.devices["bacnet-4322"].profile.points
    assert len(points) == len(site.devices["panel"].profile.points)
    assert "objectList not read whole" in caplog.text
