"""Every built-in rule from a simulator scenario, through the real chain: `facility simulate`
(Modbus TCP and BACnet/IP on loopback) -> `facility gateway` (two of them) -> the test
mosquitto -> `facility rules` -> PostgreSQL, each a separate process as an operator runs them.

A written site spreads the faults over buildings so that they do not interfere (a power
outage stops only its own building's lifts and pumps) and one scenario plays every fault of
the simulators' list at once. For each fault the test finds the alarm of the right type and
priority on the right device and the work order with the right procedure and its steps (no
order for the communication alarms), exactly one alarm and one order per fault, and the
consequences grouped: a building's power outage holds its pumps' low pressure (and whatever
its lifts show but an entrapment, which stays its own critical alarm with its own order); a
water outage holds its tank's low level and, once the pumps stop dry, its low pressure; a
gateway killed with SIGKILL (the broker publishes its will) holds its device's offline alarm.
Nothing else is raised. Only the low tank level's 30 s on-delay is shortened (site
`rules:`); the delays themselves are tested in the unit tests."""

from __future__ import annotations

import socket
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from facility.ports import free_port
from facility.procedures import load_procedures
from rules.definitions import load_rules
from simulators.models import seed_for
from simulators.models.pump_set import PumpSetModel
from tests.integration.chain_support import ROOT, Chain, chain, poll, query

pytestmark = [pytest.mark.slow, pytest.mark.timeout(330)]

PROCEDURES = ROOT / "procedures"
SETTLE_S = 200.0  # from the gateways online to every alarm in place (about 110 s needed)


@dataclass(frozen=True)
class Expect:
    source: str
    alarm_type: str
    priority: str
    procedure: str | None  # None: no work order
    parent: tuple[str, str] | None = None  # grouped under this (source, alarm_type)

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.alarm_type)


def modbus(device_id: str, typ: str) -> dict[str, Any]:
    profile = {"pump_set": "pump_set", "elevator": "elevator", "switchgear": "switchgear",
               "leak_detector": "leak_detector", "gas_detector": "gas_detector"}[typ]
    return {"id": device_id, "type": typ, "profile": profile, "timeout_s": 2.0,
            "address": {"protocol": "modbus", "port": free_port()}}


def panel(device_id: str, instance: int) -> dict[str, Any]:
    return {"id": device_id, "type": "fire_panel", "profile": "firepanel", "timeout_s": 2.0,
            "address": {"protocol": "bacnet", "port": free_port(socket.SOCK_DGRAM),
                        "device_instance": instance}}


BUILDINGS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    # a power outage with an entrapment in it; p-lift-2 stops wherever the outage finds it
    "power": ("gw-main", [modbus("p-gear", "switchgear"), modbus("p-lift-1", "elevator"),
                          modbus("p-lift-2", "elevator"), modbus("p-pumps", "pump_set")]),
    "lifts": ("gw-main", [modbus(f"l-{n}", "elevator") for n in ("trap", "door", "level",
                                                                  "ctrl", "over")]),
    # the names of the two draining tanks matter: demand (and so the draw) is seeded by the
    # device id; test_the_tanks_drain_in_time checks these drain within the test
    "water": ("gw-main", [modbus(f"w-{n}", "pump_set") for n in ("inlet", "tank", "trip", "low",
                                                                  "high", "vfd")]),
    "fire": ("gw-main", [panel("f-alarm", 3101), panel("f-fire", 3102),
                         panel("f-trouble", 3103), panel("f-zone", 3104)]),
    "comms": ("gw-main", [modbus("c-pumps", "pump_set")]),
    "leaks": ("gw-main", [modbus("k-leak", "leak_detector"), modbus("k-flood", "leak_detector"),
                          modbus("k-gas", "gas_detector"), modbus("k-gasout", "gas_detector")]),
    "doomed": ("gw-doomed", [modbus("d-pumps", "pump_set"), modbus("d-gear", "switchgear")]),
}

STEPS: list[dict[str, Any]] = [
    {"at": "1s", "device": "w-tank", "fault": "tank_level_low"},
    {"at": "1s", "device": "w-inlet", "fault": "water_outage"},
    {"at": "15s", "device": "p-gear", "fault": "power_outage"},
    {"at": "20s", "device": "p-lift-1", "fault": "entrapment"},
    {"at": "15s", "device": "l-trap", "fault": "entrapment"},
    {"at": "15s", "device": "l-door", "fault": "door_open_while_moving"},
    {"at": "15s", "device": "l-level", "fault": "stopped_outside_door_zone"},
    {"at": "15s", "device": "l-ctrl", "fault": "controller_fault"},
    {"at": "15s", "device": "l-over", "fault": "overtravel"},
    {"at": "15s", "device": "w-trip", "fault": "pump_fault", "zone": 1},
    {"at": "15s", "device": "w-low", "fault": "low_pressure"},
    {"at": "15s", "device": "w-high", "fault": "high_pressure"},
    {"at": "15s", "device": "w-vfd", "fault": "vfd_fault"},
    {"at": "15s", "device": "f-alarm", "fault": "fire_alarm", "zone": 2},
    {"at": "15s", "device": "f-fire", "fault": "fire_alarm", "zone": 1},
    {"at": "18s", "device": "f-fire", "fault": "fire_alarm", "zone": 3},
    {"at": "15s", "device": "f-trouble", "fault": "fire_trouble", "zone": 2},
    {"at": "15s", "device": "f-trouble", "fault": "fire_supervisory", "zone": 4},
    {"at": "15s", "device": "f-zone", "fault": "point_fault", "point": "zone_3_alarm",
     "reliability": "open-loop"},
    {"at": "15s", "device": "c-pumps", "fault": "comms_loss"},
    {"at": "15s", "device": "k-leak", "fault": "water_leak", "zone": 3},
    {"at": "15s", "device": "k-flood", "fault": "flooding"},
    {"at": "15s", "device": "k-gas", "fault": "gas_leak"},
    {"at": "15s", "device": "k-gasout", "fault": "gas_outage"},
    {"at": "15s", "device": "d-pumps", "fault": "comms_loss"},
]

OUTAGE = ("p-gear", "power_outage")
WATER_OUTAGE = ("w-inlet", "water_outage")
GATEWAY = ("gw-doomed", "gateway_offline")
EXPECTED: list[Expect] = [
    Expect("p-gear", "power_outage", "critical", "power_outage"),
    Expect("p-lift-1", "entrapment", "critical", "elevator_entrapment"),  # never grouped
    Expect("p-pumps", "low_pressure", "high", None, parent=OUTAGE),
    Expect("l-trap", "entrapment", "critical", "elevator_entrapment"),
    Expect("l-door", "door_open_while_moving", "critical", "elevator_fault"),
    Expect("l-level", "stopped_outside_door_zone", "high", "elevator_fault"),
    Expect("l-ctrl", "elevator_fault", "high", "elevator_fault"),
    Expect("l-over", "overtravel", "critical", "elevator_fault"),
    Expect("l-over", "stopped_outside_door_zone", "high", None, parent=("l-over", "overtravel")),
    Expect("w-inlet", "water_outage", "high", "water_outage"),
    Expect("w-inlet", "tank_level_low", "medium", None, parent=WATER_OUTAGE),
    Expect("w-inlet", "low_pressure", "high", None, parent=WATER_OUTAGE),  # pumps stop dry
    Expect("w-tank", "tank_level_low", "medium", "pump_set_fault"),
    Expect("w-trip", "pump_fault", "high", "pump_set_fault"),
    Expect("w-low", "low_pressure", "high", "pump_set_fault"),
    Expect("w-high", "high_pressure", "high", "pump_set_fault"),
    Expect("w-vfd", "vfd_fault", "high", "pump_set_fault"),
    Expect("w-vfd", "low_pressure", "high", None, parent=("w-vfd", "vfd_fault")),  # pumps stop
    Expect("f-alarm", "fire_alarm", "critical", "fire_alarm_signal"),
    Expect("f-fire", "fire_alarm", "critical", "fire_alarm_signal"),
    Expect("f-fire", "fire", "critical", "fire"),  # two zones of one panel
    Expect("f-trouble", "fire_trouble", "high", "fire_system_fault"),
    Expect("f-trouble", "fire_supervisory", "high", "fire_system_fault"),
    Expect("f-zone", "fire_zone_fault", "high", "fire_system_fault"),
    Expect("k-leak", "water_leak", "high", "water_leak"),
    Expect("k-flood", "flooding", "critical", "water_leak"),
    Expect("k-gas", "gas_leak", "critical", "gas_leak"),
    Expect("k-gas", "gas_outage", "high", None, parent=("k-gas", "gas_leak")),  # valve shut
    Expect("k-gasout", "gas_outage", "high", "gas_outage"),
    Expect("c-pumps", "device_offline", "high", None),
    Expect("gw-doomed", "gateway_offline", "high", None),
    Expect("d-pumps", "device_offline", "high", None, parent=GATEWAY),
]


def write_site(tmp_path: Path, site_id: str) -> Path:
    site = {
        "site": site_id,
        "profiles_dir": str(ROOT / "profiles"),
        "gateways": [{"id": gw, "report_period_s": 5, "offline_after_failures": 4}
                     for gw in ("gw-main", "gw-doomed")],
        "buildings": [{"id": b, "gateway": gw, "devices": devices}
                      for b, (gw, devices) in BUILDINGS.items()],
        "rules": {"tank_level_low": {"on_delay_s": 3}},
    }
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(site))
    return path


def seconds_until_tank_below(device_id: str, fault: str, level_m: float) -> float:
    """How long after the fault starts the device's (seeded, deterministic) model needs to
    bring its tank below the level."""
    model = PumpSetModel(seed=seed_for(device_id))
    model.step(0.0)
    model.set_fault(fault, True)
    t = 0.0
    while model.tank_level_m >= level_m:
        t = round(t + 0.2, 3)
        model.step(t)
        assert t < 3600, f"the tank of {device_id} never falls below {level_m} m"
    return t


def test_the_tanks_drain_in_time() -> None:
    """The end-to-end test below waits SETTLE_S: its draining tanks must make it."""
    assert seconds_until_tank_below("w-tank", "tank_level_low", 1.0) < 90
    assert seconds_until_tank_below("w-inlet", "water_outage", 1.0) < 90
    assert seconds_until_tank_below("w-inlet", "water_outage", 0.3) < 110  # dry-run stop


def alarms_and_orders(database_url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    alarms = query(database_url, "SELECT id, source, alarm_type, rule_id, priority, active,"
                   " suppressed, parent_alarm_id, work_order_id, detail FROM alarms ORDER BY id")
    orders = query(database_url, "SELECT w.id, w.source, w.fault, w.alarm_id, w.procedure_id,"
                   " w.origin, (SELECT count(*) FROM work_order_steps s"
                   " WHERE s.work_order_id = w.id) AS steps FROM work_orders w ORDER BY w.id")
    return alarms, orders


def check(database_url: str, expected: list[Expect], chain_: Chain) -> bool:
    """Every expected alarm and order, nothing else; AssertionError (not yet) otherwise."""
    for name, service in chain_.services.items():
        if name != "gw-doomed" and service.proc.poll() is not None:
            pytest.fail(f"{name} exited with status {service.proc.returncode}")
    alarms, orders = alarms_and_orders(database_url)
    by_key = {(a["source"], a["alarm_type"]): a for a in alarms}
    missing = [e.key for e in expected if e.key not in by_key]
    assert not missing, f"no alarm yet: {missing}"
    ordered = {(o["source"], o["fault"]) for o in orders}
    unordered = [e.key for e in expected if e.procedure and e.key not in ordered]
    assert not unordered, f"no work order yet: {unordered}"
    for e in expected:
        a = by_key[e.key]
        assert a["priority"] == e.priority, a
        if e.parent is None:
            assert a["suppressed"] is False and a["parent_alarm_id"] is None, a
        else:
            assert a["suppressed"] is True, f"not grouped yet: {a}"
            assert a["parent_alarm_id"] == by_key[e.parent]["id"], (a, e.parent)
    # a lift of the outage's building shows what the outage found it doing (random): at a
    # landing nothing; between floors empty, a stop grouped under the outage; with people
    # aboard, an entrapment of its own
    expected_keys = {e.key for e in expected}
    extra = [a for a in alarms if (a["source"], a["alarm_type"]) not in expected_keys]
    for a in extra:
        if (a["source"], a["alarm_type"]) == ("p-lift-2", "entrapment"):
            assert a["suppressed"] is False, a
        elif (a["source"], a["alarm_type"]) == ("p-lift-2", "stopped_outside_door_zone"):
            assert a["suppressed"] is True and a["parent_alarm_id"] == by_key[OUTAGE]["id"], a
        else:
            pytest.fail(f"an alarm no fault explains: {a}")
    return True


def test_every_fault_ends_as_its_alarm_and_work_order_grouped_where_a_consequence(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    expected = EXPECTED
    # every built-in rule is exercised by some fault of the scenario
    assert {r.alarm_type or r.id for r in load_rules()} == {e.alarm_type for e in expected}
    site = write_site(tmp_path, site_id)
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(yaml.safe_dump({"name": "every fault", "steps": STEPS}))
    state = str(tmp_path / "state")
    with chain(tmp_path, database_url=database_url, mqtt_url=mqtt_url,
               mqtt_protocol=mqtt_protocol, site=site) as c:
        c.start("rules", "rules", "--procedures", str(PROCEDURES), ready="rules subscribed to")
        c.start("simulate", "simulate", "--scenario", str(scenario),
                ready="simulators of site")
        for gw in ("gw-main", "gw-doomed"):
            c.start(gw, "gateway", "--gateway", gw, "--state-dir", state,
                    ready=f"gateway {gw} online")
        # the doomed gateway dies once its device's offline alarm is up (a standalone alarm
        # until then), so that the gateway's alarm finds a child to group
        poll(lambda: query(database_url, "SELECT 1 FROM alarms WHERE source = 'd-pumps'"
                           " AND alarm_type = 'device_offline' AND NOT suppressed"),
             90, "d-pumps offline")
        c.kill("gw-doomed")
        poll(lambda: check(database_url, expected, c), SETTLE_S, "every fault's alarm")
        events = query(database_url, "SELECT kind, payload->>'device' AS device,"
                       " payload->>'alarm_type' AS alarm_type FROM events"
                       " WHERE kind IN ('alarm.raised', 'work_order.created')")
        alarms, orders = alarms_and_orders(database_url)

    by_key = {(a["source"], a["alarm_type"]): a for a in alarms}
    # one alarm per device and fault
    assert not [k for k, n in Counter((a["source"], a["alarm_type"]) for a in alarms).items()
                if n > 1]
    # exactly one order per fault that has a procedure, none for the others or the grouped
    order_of = Counter((o["source"], o["fault"]) for o in orders)
    # what rules did (its outbox, written with each change): every order created once and
    # every alarm raised at most once (a grouped one may start suppressed), whatever the
    # unique indexes would have refused
    created = Counter((e["device"], e["alarm_type"]) for e in events
                      if e["kind"] == "work_order.created")
    assert created == order_of and all(n == 1 for n in created.values()), created
    raised = Counter((e["device"], e["alarm_type"]) for e in events
                     if e["kind"] == "alarm.raised")
    assert all(n == 1 for n in raised.values()), raised
    procedures = load_procedures(PROCEDURES)
    for e in expected:
        a = by_key[e.key]
        if e.procedure is None:
            assert e.key not in order_of and a["work_order_id"] is None, a
            continue
        [order] = [o for o in orders if (o["source"], o["fault"]) == e.key]
        assert order["procedure_id"] == e.procedure, order
        assert order["origin"] == "alarm" and order["alarm_id"] == a["id"], order
        assert a["work_order_id"] == order["id"]
        assert order["steps"] == len(procedures[e.procedure].steps), order  # the checklist
    expected_orders = {e.key for e in expected if e.procedure is not None}
    extra_orders = set(order_of) - expected_orders
    assert extra_orders <= {("p-lift-2", "entrapment")}, extra_orders
    # each fire signal names its zones: the probable fire both of them
    assert set(by_key[("f-fire", "fire")]["detail"]["points"]) == {"zone_1_alarm",
                                                                     "zone_3_alarm"}
    assert by_key[("f-alarm", "fire_alarm")]["detail"]["points"] == ["zone_2_alarm"]
    assert by_key[("f-trouble", "fire_trouble")]["detail"]["points"] == ["zone_2_trouble"]
    zone = by_key[("f-zone", "fire_zone_fault")]["detail"]
    assert zone["points"] == ["zone_3_alarm"] and zone["flags"]["zone_3_alarm"].startswith("fault")
    assert by_key[("f-trouble", "fire_supervisory")]["detail"]["points"] == [
        "zone_4_supervisory"]
    assert by_key[("l-ctrl", "elevator_fault")]["detail"]["values"] == {"fault_code": 5}
    assert by_key[("k-leak", "water_leak")]["detail"]["points"] == ["zone_3_leak"]
