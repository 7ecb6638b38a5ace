"""Protocol misbehaviour seen by plain clients (pymodbus, bacpypes3), never the gateway:
slow answers, exception responses 02/04/06 on chosen addresses, at a rate or from a scenario
step, dropped connections, requests never answered, a meter with swapped word order, and a
BACnet device without segmentation or without ReadPropertyMultiple."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest
from bacpypes3.apdu import AbortPDU, RejectPDU
from bacpypes3.pdu import Address
from pymodbus.exceptions import ConnectionException, ModbusIOException

from facility.site import Site
from tests.integration.sim_support import (
    ManualClock,
    bacnet,
    bacnet_client,
    client,
    eventually,
    f32,
    make_site,
    modbus,
    scenario,
    simulators,
)

TRANSPORT_ERRORS = (ModbusIOException, ConnectionException, asyncio.TimeoutError)


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


def gear_site(tmp_path: Path) -> Site:
    return make_site(tmp_path, {"a": [
        modbus("gear", "switchgear", "switchgear"),
        modbus("cdab", "switchgear", "switchgear_cdab"),
        bacnet("panel", 4901),
    ]})


async def read_meter(site: Any, device: str = "gear", timeout_s: float = 2.0) -> Any:
    async with client(site, device, timeout_s) as c:
        return await c.read_input_registers(0, count=19, device_id=1)


async def test_exceptions_on_configured_addresses_leave_the_rest_readable(
    tmp_path: Path,
) -> None:
    site = gear_site(tmp_path)
    sc = scenario({"simulation": {"gear": {"exceptions": [
        {"table": "input", "address": 12, "code": 2},
        {"table": "discrete", "address": 2, "code": 4},
    ]}}})
    async with simulators(site, sc), client(site, "gear") as c:
        block = await c.read_input_registers(10, count=4, device_id=1)
        before = await c.read_input_registers(0, count=12, device_id=1)
        after = await c.read_input_registers(14, count=5, device_id=1)
        bits = await c.read_discrete_inputs(2, count=1, device_id=1)
        other_bits = await c.read_discrete_inputs(0, count=2, device_id=1)
    assert block.isError() and block.exception_code == 2
    assert not before.isError() and 225 <= f32(*before.registers[:2]) <= 235
    assert not after.isError()
    assert bits.isError() and bits.exception_code == 4
    assert other_bits.bits[:2] == [True, True]


async def test_busy_and_device_failure_steps_last_their_duration(tmp_path: Path) -> None:
    site = gear_site(tmp_path)
    sc = scenario({"steps": [
        {"at": "0.3s", "device": "gear", "fault": "modbus_busy", "duration": "1s"},
        {"at": "2s", "device": "gear", "fault": "modbus_device_failure", "duration": "1s"},
    ]})
    clock = ManualClock()  # the scenario's time moves only when the test moves it
    async with simulators(site, sc, clock=clock), client(site, "gear") as c:

        async def code() -> int:
            r = await c.read_input_registers(0, count=2, device_id=1)
            return int(r.exception_code) if r.isError() else 0

        async def code_becomes(now: float, expected: int) -> None:
            clock.now = now
            await eventually(lambda: _equals(code(), expected))  # the next tick plays it

        assert await code() == 0  # before the first step
        await code_becomes(0.3, 6)  # busy from its start ...
        await code_becomes(1.29, 6)  # ... to its end
        await code_becomes(1.3, 0)
        await code_becomes(2.0, 4)  # then the device failure, for its second
        await code_becomes(2.99, 4)
        await code_becomes(3.0, 0)


async def test_exception_rate_answers_busy_to_some_requests(tmp_path: Path) -> None:
    site = gear_site(tmp_path)
    sc = scenario({"simulation": {"gear": {"exception_rate": 0.5, "exception_code": 6}}})
    async with simulators(site, sc), client(site, "gear") as c:
        results = [await c.read_input_registers(0, count=2, device_id=1) for _ in range(40)]
    busy = [r for r in results if r.isError()]
    assert {r.exception_code for r in busy} == {6}
    assert 5 < len(busy) < 35


async def test_a_slow_device_times_out_a_hasty_client_and_answers_a_patient_one(
    tmp_path: Path,
) -> None:
    site = gear_site(tmp_path)
    sc = scenario({"simulation": {"gear": {"delay": "1s"}}})
    async with simulators(site, sc):
        with pytest.raises(TRANSPORT_ERRORS):
            await read_meter(site, timeout_s=0.3)
        patient = await read_meter(site, timeout_s=3.0)
    assert not patient.isError()


async def test_slow_step_overlays_its_delay_while_it_lasts(tmp_path: Path) -> None:
    site = gear_site(tmp_path)
    sc = scenario({"steps": [{"at": "0.2s", "device": "gear", "fault": "slow",
                              "delay": "2s", "duration": "1.5s"}]})
    clock = ManualClock()
    async with simulators(site, sc, clock=clock):
        assert not (await read_meter(site, timeout_s=2.0)).isError()  # before the step
        clock.now = 0.2

        async def slow() -> bool:
            try:
                await read_meter(site, timeout_s=0.5)
            except TRANSPORT_ERRORS:
                return True
            return False

        await eventually(slow)  # the step begins at the next tick
        clock.now = 1.7

        async def quick_again() -> bool:
            try:
                return not (await read_meter(site, timeout_s=1.0)).isError()
            except TRANSPORT_ERRORS:
                return False

        await eventually(quick_again)


# One Modbus TCP request, as a plain socket sends it: read 2 input registers from 0, unit 1.
READ_REQUEST = bytes([0, 1, 0, 0, 0, 6, 1, 4, 0, 0, 0, 2])


async def raw_exchange(site: Any, device: str) -> bytes | None:
    """Send one request on a fresh socket: the reply, b"" if the server closed the
    connection, None if it stayed silent (and open) for half a second."""
    port = site.devices[device].config.address.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(READ_REQUEST)
        await writer.drain()
        try:
            async with asyncio.timeout(0.5):
                return await reader.read(256)
        except TimeoutError:
            return None
    finally:
        writer.close()


async def test_dropped_connections_and_a_mute_device(tmp_path: Path) -> None:
    site = gear_site(tmp_path)
    sc = scenario({"steps": [
        {"at": "0s", "device": "gear", "fault": "drop_connections", "duration": "1s"},
        {"at": "0s", "device": "cdab", "fault": "mute"},
    ]})
    async with simulators(site, sc):

        async def closed() -> bool:
            return await raw_exchange(site, "gear") == b""  # closed instead of answered

        await eventually(closed)  # both steps are played at the first tick
        assert await raw_exchange(site, "cdab") is None  # open, silent
        async with client(site, "gear") as c:
            with pytest.raises(TRANSPORT_ERRORS):
                await c.read_input_registers(0, count=2, device_id=1)

        async def answers() -> bool:
            reply = await raw_exchange(site, "gear")
            return reply is not None and len(reply) > 8 and reply[7] == 4 and reply[8] == 4

        await eventually(answers)  # the step ended


async def test_the_cdab_meter_sends_the_low_word_first(tmp_path: Path) -> None:
    site = gear_site(tmp_path)
    async with simulators(site):
        regs = (await read_meter(site, "cdab")).registers
    assert 225 <= f32(regs[1], regs[0]) <= 235
    assert not 225 <= f32(regs[0], regs[1]) <= 235
    assert regs[17] << 16 | regs[16] >= 100_000  # energy, uint32 CDAB


async def rpm(app: Any, address: Address) -> Any:
    request: list[Any] = []
    for zone in range(1, 5):
        for kind in (100, 200, 300):
            request += [f"binaryInput,{kind + zone}", ["objectName", "description", "presentValue"]]
    async with asyncio.timeout(3):
        return await app.read_property_multiple(address, request)


async def test_bacnet_device_without_rpm_rejects_it_and_answers_read_property(
    tmp_path: Path,
) -> None:
    site = gear_site(tmp_path)
    panel = Address(f"127.0.0.1:{site.devices['panel'].config.address.port}")
    sc = scenario({"simulation": {"panel": {"read_property_multiple": False}}})
    async with simulators(site, sc), bacnet_client() as app:
        with pytest.raises(RejectPDU) as info:
            await rpm(app, panel)
        async with asyncio.timeout(3):
            name = await app.read_property(panel, "binaryInput,103", "objectName")
    assert "unrecognized-service" in str(info.value)
    assert str(name) == "zone_3_alarm"


async def test_bacnet_device_without_segmentation_aborts_a_large_answer(
    tmp_path: Path,
) -> None:
    site = gear_site(tmp_path)
    panel = Address(f"127.0.0.1:{site.devices['panel'].config.address.port}")
    sc = scenario({"simulation": {"panel": {"segmentation": False, "max_apdu": 128}}})
    async with simulators(site, sc), bacnet_client() as app:
        with pytest.raises(AbortPDU) as info:
            await rpm(app, panel)
        async with asyncio.timeout(3):
            small = await app.read_property_multiple(
                panel, ["binaryInput,103", ["presentValue"]]
            )
            segmentation = await app.read_property(
                panel, "device,4901", "segmentationSupported"
            )
    assert "segmentation-not-supported" in str(info.value)
    assert [str(v) for *_, v in small] == ["inactive"]
    assert str(segmentation) == "no-segmentation"
