"""The rules service against a real broker and PostgreSQL: a building's power outage groups
its lifts' and pumps' alarms (no work orders of their own, not annunciated) but never an
entrapment, and releases the ones still active when power returns; chattering input makes one
alarm and one order; the same messages handled by two rules instances at once make one alarm;
every alarm and work-order event is in the outbox."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import yaml

from facility.site import Site, load_site
from rules.handling import RulesService
from tests.integration.test_rules_service import (
    FREE,
    ROOT,
    TRAPPED,
    Sender,
    all_handled,
    eventually,
    publisher,
    query,
    rules_running,
)

POWER = {"voltage_l1": 231.0, "voltage_l2": 229.5, "voltage_l3": 230.2,
         "incoming_breaker_closed": True}
NO_POWER = {"voltage_l1": 0.0, "voltage_l2": 0.0, "voltage_l3": 0.0,
            "incoming_breaker_closed": False}
PRESSURE_OK = {"outlet_pressure": 0.45, "pressure_setpoint": 0.45, "inlet_pressure": 0.15,
               "tank_level": 2.5}
PRESSURE_LOW = {**PRESSURE_OK, "outlet_pressure": 0.05}
EMPTY_STOP = {**TRAPPED, "passengers": 0, "service_mode": 3}


async def kinds_of(database_url: str) -> dict[str, int]:
    """The outbox by event kind: what the rules services did."""
    return dict(await query(database_url, "SELECT kind, count(*) FROM events GROUP BY kind"))


def building_site(tmp_path: Path, site_id: str) -> Site:
    def dev(name: str, typ: str, profile: str, port: int) -> dict[str, Any]:
        return {"id": f"{site_id}-{name}", "type": typ, "profile": profile,
                "address": {"protocol": "modbus", "port": port}}

    raw = {
        "site": site_id, "profiles_dir": str(ROOT / "profiles"),
        "gateways": [{"id": "gw-a"}],
        "buildings": [{"id": "a", "gateway": "gw-a", "devices": [
            dev("lift1", "elevator", "elevator", 15001),
            dev("lift2", "elevator", "elevator", 15002),
            dev("pumps", "pump_set", "pump_set", 15003),
            dev("switch", "switchgear", "switchgear", 15004)]}],
        "rules": {"power_outage": {"on_delay_s": 0, "off_delay_s": 0},
                  "entrapment": {"on_delay_s": 0.3}, "low_pressure": {"on_delay_s": 0.6},
                  "stopped_outside_door_zone": {"on_delay_s": 0.6}},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return load_site(path)


async def test_power_outage_groups_lifts_and_pumps_but_not_an_entrapment(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    site = building_site(tmp_path, site_id)
    lift1, lift2, pumps, switch = (f"{site_id}-{n}" for n in ("lift1", "lift2", "pumps",
                                                               "switch"))
    async with publisher(mqtt_url, mqtt_protocol) as pub, \
            rules_running(site, database_url, mqtt_url, mqtt_protocol):
        send = Sender(pub, site)
        for dev, values in ((switch, POWER), (pumps, PRESSURE_OK), (lift1, FREE),
                            (lift2, FREE)):
            await send.telemetry(dev, values)
        await send.telemetry(switch, NO_POWER)
        await eventually(database_url, "SELECT 1 FROM alarms WHERE alarm_type = 'power_outage'")

        async def symptoms() -> None:
            await send.telemetry(pumps, PRESSURE_LOW)
            await send.telemetry(lift1, TRAPPED)
            await send.telemetry(lift2, EMPTY_STOP)

        sql = "SELECT source, alarm_type, suppressed, parent_alarm_id, work_order_id FROM alarms"
        rows = await eventually(database_url, sql, check=lambda r: len(r) == 4,
                                while_waiting=symptoms)
        by_type = {r[1]: r for r in rows}
        outage_id = (await query(database_url, "SELECT id FROM alarms"
                                 " WHERE alarm_type = 'power_outage'"))[0][0]
        assert by_type["power_outage"][2:4] == (False, None)
        assert by_type["entrapment"][2:4] == (False, None)  # its own critical alarm
        assert by_type["low_pressure"][2:4] == (True, outage_id)
        assert by_type["stopped_outside_door_zone"][2:4] == (True, outage_id)
        orders = await query(database_url, "SELECT procedure_id FROM work_orders ORDER BY id")
        assert sorted(o[0] for o in orders) == ["elevator_entrapment", "power_outage"]
        kinds = [k for (k,) in await query(database_url, "SELECT kind FROM events")]
        assert kinds.count("alarm.suppressed") == 2 and kinds.count("alarm.raised") == 2
        assert kinds.count("work_order.created") == 2

        # power returns and the empty lift levels: its suppressed alarm closes without an
        # acknowledgement; the pumps, still low, stay grouped for the outage's release time
        # (60 s: time to rebuild pressure; the release itself is in the engine's unit tests)
        await send.telemetry(switch, POWER)
        await eventually(database_url, "SELECT 1 FROM alarms WHERE alarm_type = 'power_outage'"
                         " AND NOT active", while_waiting=lambda: send.telemetry(lift2, FREE))
        await eventually(database_url, "SELECT 1 FROM alarms WHERE state = 'normal' AND"
                         " alarm_type = 'stopped_outside_door_zone'",
                         while_waiting=lambda: send.telemetry(lift2, FREE))
        final = {r[1]: r for r in await query(database_url, sql)}
        assert final["low_pressure"][2] is True and final["low_pressure"][4] is None
        assert final["stopped_outside_door_zone"][4] is None
        orders = await query(database_url, "SELECT procedure_id FROM work_orders")
        assert len(orders) == 2


async def test_chattering_input_makes_one_alarm_and_one_work_order(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    site = building_site(tmp_path, site_id)
    lift = f"{site_id}-lift1"
    services: list[RulesService] = []
    async with publisher(mqtt_url, mqtt_protocol) as pub, \
            rules_running(site, database_url, mqtt_url, mqtt_protocol,
                          on_service=services.append):
        send = Sender(pub, site)
        await eventually(database_url, "SELECT id FROM work_orders",
                         while_waiting=lambda: send.telemetry(lift, TRAPPED))
        for _ in range(15):  # flapping faster than the 2 s off-delay
            await send.telemetry(lift, FREE)
            await asyncio.sleep(0.05)
            await send.telemetry(lift, TRAPPED)
            await asyncio.sleep(0.05)
        await all_handled(services, send.sent)  # every bounce handled, then assert
    # what the code did: one raise and one order in its outbox, no clearing
    assert await kinds_of(database_url) == {"alarm.raised": 1, "work_order.created": 1}
    assert await query(database_url, "SELECT count(*) FROM alarm_events"
                       " WHERE event = 'cleared'") == [(0,)]


async def test_two_rules_instances_seeing_the_same_messages_make_one_alarm(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    site = building_site(tmp_path, site_id)
    lift = f"{site_id}-lift1"
    services: list[RulesService] = []
    async with publisher(mqtt_url, mqtt_protocol) as pub, \
            rules_running(site, database_url, mqtt_url, mqtt_protocol, f"rules-{site_id}-1",
                          on_service=services.append), \
            rules_running(site, database_url, mqtt_url, mqtt_protocol, f"rules-{site_id}-2",
                          on_service=services.append):
        send = Sender(pub, site)
        await asyncio.gather(*(send.telemetry(lift, TRAPPED) for _ in range(10)))
        await eventually(database_url, "SELECT id FROM work_orders",
                         while_waiting=lambda: send.telemetry(lift, TRAPPED))
        await all_handled(services, send.sent)  # both instances saw every message
        # (the alarm's on-delay ends at a tick: both have had theirs once repeat_count moves)
        await eventually(database_url, "SELECT 1 FROM alarms WHERE repeat_count >= 1")
    # each instance raised once: the second found the open alarm and made it a repeat, so
    # the outbox holds one raise, one repeat and one order
    assert len(services) == 2
    assert await kinds_of(database_url) == {"alarm.raised": 1, "alarm.repeat": 1,
                                            "work_order.created": 1}
