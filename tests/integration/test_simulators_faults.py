"""Every device fault seen by independent protocol clients (pymodbus, bacpypes3), with the
estate running ten times faster than real time: the raw register and object values of each
fault, and the physical consequences across one building's devices."""

from __future__ import annotations

from pathlib import Path

from bacpypes3.pdu import Address

from facility.site import Site
from tests.integration.sim_support import (
    bacnet,
    bacnet_client,
    client,
    elevator_state,
    eventually,
    f32,
    make_site,
    modbus,
    pump_state,
    scenario,
    simulators,
)

FAST = 10.0  # simulated seconds per real second


def building_site(tmp_path: Path) -> Site:
    return make_site(tmp_path, {
        "a": [modbus("lift", "elevator", "elevator", unit=3),
              modbus("pumps", "pump_set", "pump_set"),
              modbus("gear", "switchgear", "switchgear"), bacnet("panel", 4801)],
        "b": [modbus("b-lift", "elevator", "elevator"), modbus("b-pumps", "pump_set", "pump_set")],
    })


async def test_power_outage_stops_the_buildings_elevator_and_pumps(tmp_path: Path) -> None:
    site = building_site(tmp_path)
    sc = scenario({"steps": [{"at": "5s", "device": "gear", "fault": "power_outage",
                              "duration": "60s"}]})
    async with simulators(site, sc, time_scale=FAST), client(site, "gear") as gear, \
            client(site, "lift") as lift, client(site, "pumps") as pumps, \
            client(site, "b-pumps") as b_pumps, client(site, "b-lift") as b_lift:

        async def outage() -> bool:
            meter = (await gear.read_input_registers(0, count=2, device_id=1)).registers
            breaker = (await gear.read_discrete_inputs(0, count=1, device_id=1)).bits[0]
            return f32(*meter) == 0.0 and not breaker

        await eventually(outage)

        async def pumps_down() -> bool:
            p = await pump_state(pumps)
            return bool(not p["pump_1_running"] and not p["pump_2_running"]
                        and p["outlet_pressure"] < 0.2)

        await eventually(pumps_down)
        car = await elevator_state(lift, unit=3)
        assert car["fault_code"] == 1 and car["service_mode"] == 3  # power lost, out of service
        assert not car["moving"]
        other = await pump_state(b_pumps)  # building b keeps its water and its lift
        assert other["outlet_pressure"] > 0.4
        assert (await elevator_state(b_lift))["fault_code"] == 0

        async def restored() -> bool:
            p = await pump_state(pumps)
            car = await elevator_state(lift, unit=3)
            return bool(car["fault_code"] == 0 and p["outlet_pressure"] > 0.4)

        await eventually(restored)


async def test_elevator_faults_in_the_served_registers(tmp_path: Path) -> None:
    site = building_site(tmp_path)
    sc = scenario({"steps": [
        {"at": "1s", "device": "lift", "fault": "door_open_while_moving", "duration": "60s"},
        {"at": "1s", "device": "b-lift", "fault": "stopped_outside_door_zone",
         "duration": "30s"},
    ]})
    async with simulators(site, sc, time_scale=FAST), client(site, "lift") as lift, \
            client(site, "b-lift") as b_lift:

        async def open_while_moving() -> bool:
            s = await elevator_state(lift, unit=3)
            return bool(s["moving"] and not s["door_closed"] and s["fault_code"] == 2)

        async def stopped_outside() -> bool:
            s = await elevator_state(b_lift)
            return bool(not s["moving"] and not s["door_zone"] and s["door_closed"]
                        and s["passengers"] == 0 and s["fault_code"] == 4
                        and s["service_mode"] == 3)

        await eventually(open_while_moving)
        await eventually(stopped_outside)

        async def back_in_service() -> bool:
            s = await elevator_state(b_lift)
            return bool(s["fault_code"] == 0 and s["service_mode"] == 0)

        await eventually(back_in_service)


async def test_pump_faults_in_the_served_registers(tmp_path: Path) -> None:
    site = building_site(tmp_path)
    sc = scenario({"steps": [
        {"at": "1s", "device": "pumps", "fault": "pump_fault", "zone": 2},
        {"at": "1s", "device": "pumps", "fault": "low_pressure"},
        {"at": "1s", "device": "b-pumps", "fault": "water_outage"},
    ]})
    async with simulators(site, sc, time_scale=FAST), client(site, "pumps") as pumps, \
            client(site, "b-pumps") as b_pumps:

        async def low_with_pump_2_tripped() -> bool:
            p = await pump_state(pumps)
            return bool(p["pump_2_fault"] and not p["pump_2_running"] and p["pump_1_running"]
                        and p["outlet_pressure"] < 0.3 and p["vfd_frequency"] == 50.0)

        async def water_outage() -> bool:
            p = await pump_state(b_pumps)
            return bool(p["inlet_pressure"] == 0.0 and p["tank_level"] < 2.5)

        await eventually(low_with_pump_2_tripped)
        await eventually(water_outage)


async def test_fire_trouble_and_supervisory_on_their_objects_and_the_lift_recall(
    tmp_path: Path,
) -> None:
    site = building_site(tmp_path)
    panel = Address(f"127.0.0.1:{site.devices['panel'].config.address.port}")
    sc = scenario({"steps": [
        {"at": "1s", "device": "panel", "fault": "fire_trouble", "zone": 2, "duration": "40s"},
        {"at": "1s", "device": "panel", "fault": "fire_supervisory", "zone": 4},
        {"at": "2s", "device": "panel", "fault": "fire_alarm", "zone": 1, "duration": "30s"},
    ]})
    async with simulators(site, sc, time_scale=FAST), bacnet_client() as app, \
            client(site, "lift") as lift:

        async def value(objid: str) -> str:
            return str(await app.read_property(panel, objid, "presentValue"))

        async def signals() -> bool:
            return (await value("binaryInput,202") == "active"
                    and await value("binaryInput,304") == "active"
                    and await value("binaryInput,101") == "active")

        await eventually(signals)
        assert await value("binaryInput,203") == "inactive"
        assert await value("multiStateValue,1") == "2"  # alarm outranks trouble

        async def recalled() -> bool:
            s = await elevator_state(lift, unit=3)
            return bool(s["service_mode"] == 2 and s["car_floor"] == 1 and not s["door_closed"])

        await eventually(recalled, timeout_s=15)

        async def trouble_only() -> bool:  # the alarm and then the trouble end
            return await value("binaryInput,101") == "inactive" and \
                await value("multiStateValue,1") == "3"

        await eventually(trouble_only, timeout_s=15)
