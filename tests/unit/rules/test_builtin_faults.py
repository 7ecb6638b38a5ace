"""Every fault the simulators play ends as the right alarm of the built-in rules, and nothing
else: the pure simulator models of one building (linked by simulators.estate, so a power
outage stops its lifts and pumps) drive the pure engine with the demo profiles, on a
simulated clock. Consequences are grouped (``suppressed_by``), an entrapment never is."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from facility.procedures import load_procedures
from facility.site import load_site
from rules.definitions import check_rules, site_rules
from rules.engine import Engine
from rules.engine_types import ClearAlarm, EngineState, RaiseAlarm, TelemetryInput
from simulators.estate import Estate
from simulators.models import build_model, seed_for

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SITE = load_site(ROOT / "sites" / "demo.yaml")
BUILDING_A = [d for d in SITE.devices.values() if d.building == "a"]
STEP_S = 0.5


def simulate(faults: Iterable[tuple[str, str, int | None]], fault_at_s: float, end_at_s: float,
             run_s: float, seed: int = 0) -> tuple[list[RaiseAlarm], list[ClearAlarm], Engine]:
    """Run building A, with the faults (device, fault, zone) from fault_at_s to end_at_s."""
    engine = Engine.for_site(site_rules(SITE, load_procedures(ROOT / "procedures")), SITE)
    models = {d.id: build_model(d.type, seed=seed_for(d.id) + seed) for d in BUILDING_A}
    estate = Estate(models, {d.id: d.building for d in BUILDING_A})
    state, raised, cleared = EngineState(), [], []
    faults = list(faults)
    t = 0.0
    while t <= run_s:
        for device, fault, zone in faults:
            if t == fault_at_s or t == end_at_s:
                models[device].set_fault(fault, t == fault_at_s, zone)
        estate.step(t)
        now = T0 + timedelta(seconds=t)
        for dev_id, model in models.items():
            state, acts = engine.evaluate(state, TelemetryInput(dev_id, model.points()), now)
            raised += [a for a in acts if isinstance(a, RaiseAlarm)]
            cleared += [a for a in acts if isinstance(a, ClearAlarm)]
        state, acts = engine.tick(state, now)
        raised += [a for a in acts if isinstance(a, RaiseAlarm)]
        cleared += [a for a in acts if isinstance(a, ClearAlarm)]
        t += STEP_S
    return raised, cleared, engine


def annunciated(raised: list[RaiseAlarm]) -> set[tuple[str, str]]:
    return {(a.source, a.alarm_type) for a in raised if a.suppressed_by is None}


def test_builtin_rules_fit_the_demo_profiles_exactly() -> None:
    procedures = load_procedures(ROOT / "procedures")
    from rules.definitions import load_rules

    check_rules(load_rules(), SITE, procedures, "builtin.yaml", strict=True)


def test_normal_operation_raises_nothing() -> None:
    raised, _, _ = simulate([], fault_at_s=-1, end_at_s=-1, run_s=900)
    assert raised == []


@pytest.mark.parametrize(("device", "fault", "zone", "alarm", "procedure"), [
    ("a-elevator-2", "entrapment", None, "entrapment", "elevator_entrapment"),
    ("a-elevator-2", "stopped_outside_door_zone", None, "stopped_outside_door_zone",
     "elevator_fault"),
    ("a-elevator-1", "door_open_while_moving", None, "door_open_while_moving", "elevator_fault"),
    ("a-pumps", "pump_fault", 1, "pump_fault", "pump_set_fault"),
    ("a-pumps", "low_pressure", None, "low_pressure", "pump_set_fault"),
    ("a-pumps", "high_pressure", None, "high_pressure", "pump_set_fault"),
    ("a-elevator-1", "controller_fault", None, "elevator_fault", "elevator_fault"),
    ("a-elevator-1", "overtravel", None, "overtravel", "elevator_fault"),
    ("a-firepanel", "fire_alarm", 3, "fire_alarm", "fire_alarm_signal"),
    ("a-firepanel", "fire_trouble", 2, "fire_trouble", "fire_system_fault"),
    ("a-firepanel", "fire_supervisory", 4, "fire_supervisory", "fire_system_fault"),
])
def test_each_fault_is_one_alarm_with_its_procedure_and_clears_after(
    device: str, fault: str, zone: int | None, alarm: str, procedure: str,
) -> None:
    raised, cleared, _ = simulate([(device, fault, zone)], fault_at_s=10, end_at_s=130,
                                  run_s=260)
    assert annunciated(raised) == {(device, alarm)}
    first = raised[0]
    assert first.procedure == procedure
    assert first.at >= T0 + timedelta(seconds=10)
    assert (device, alarm) in {(c.source, c.alarm_type) for c in cleared}
    if zone is not None and first.detail.get("points"):
        assert first.detail["points"] == [f"zone_{zone}_{alarm.removeprefix('fire_')}"]


def test_two_zones_in_alarm_are_a_probable_fire() -> None:
    raised, _, _ = simulate([("a-firepanel", "fire_alarm", 1), ("a-firepanel", "fire_alarm", 2)],
                            fault_at_s=10, end_at_s=60, run_s=80)
    assert annunciated(raised) == {("a-firepanel", "fire_alarm"), ("a-firepanel", "fire")}
    fire = next(a for a in raised if a.alarm_type == "fire")
    assert fire.procedure == "fire" and fire.detail["points"] == ["zone_1_alarm", "zone_2_alarm"]


def test_water_outage_groups_the_low_tank_and_the_pressure_loss_that_follow() -> None:
    raised, _, _ = simulate([("a-pumps", "water_outage", None)], fault_at_s=10, end_at_s=2000,
                            run_s=1500)
    assert annunciated(raised) == {("a-pumps", "water_outage")}
    consequences = {a.alarm_type: a.suppressed_by for a in raised if a.suppressed_by}
    assert consequences == {"tank_level_low": ("a-pumps", "water_outage"),
                            "low_pressure": ("a-pumps", "water_outage")}


def test_a_slow_refill_is_a_low_tank_alarm_and_no_water_outage() -> None:
    raised, cleared, _ = simulate([("a-pumps", "tank_level_low", None)], fault_at_s=10,
                                  end_at_s=400, run_s=600)
    assert annunciated(raised) == {("a-pumps", "tank_level_low")}
    assert raised[0].procedure == "pump_set_fault"
    assert ("a-pumps", "tank_level_low") in {(c.source, c.alarm_type) for c in cleared}


def test_overtravel_groups_the_stop_outside_the_door_zone_it_causes() -> None:
    raised, _, _ = simulate([("a-elevator-1", "overtravel", None)], fault_at_s=10,
                            end_at_s=200, run_s=100)
    assert annunciated(raised) == {("a-elevator-1", "overtravel")}
    assert {a.alarm_type: a.suppressed_by for a in raised if a.suppressed_by} == {
        "stopped_outside_door_zone": ("a-elevator-1", "overtravel")}


def test_a_vfd_trip_groups_the_pressure_loss_that_follows() -> None:
    raised, _, _ = simulate([("a-pumps", "vfd_fault", None)], fault_at_s=10, end_at_s=200,
                            run_s=150)
    assert annunciated(raised) == {("a-pumps", "vfd_fault")}
    assert {a.alarm_type: a.suppressed_by for a in raised if a.suppressed_by} == {
        "low_pressure": ("a-pumps", "vfd_fault")}


@pytest.mark.parametrize("seed", range(4))
def test_power_outage_groups_the_buildings_lifts_and_pumps_but_never_an_entrapment(
    seed: int,
) -> None:
    raised, cleared, _ = simulate([("a-switchgear", "power_outage", None)], fault_at_s=10,
                                  end_at_s=100, run_s=200, seed=seed)
    outage = ("a-switchgear", "power_outage")
    loud = annunciated(raised)
    assert outage in loud
    assert loud - {outage} <= {("a-elevator-1", "entrapment"), ("a-elevator-2", "entrapment")}
    grouped = [a for a in raised if a.suppressed_by]
    assert all(a.suppressed_by == outage for a in grouped)
    assert ("a-pumps", "low_pressure") in {(a.source, a.alarm_type) for a in grouped}
    assert outage in {(c.source, c.alarm_type) for c in cleared}


# -- leaks, flooding and gas (issue 16) ------------------------------------------------


@pytest.mark.parametrize(("device", "fault", "zone", "alarm", "procedure"), [
    ("a-leak", "water_leak", 2, "water_leak", "water_leak"),
    ("a-leak", "flooding", None, "flooding", "water_leak"),
    ("a-gas", "gas_outage", None, "gas_outage", "gas_outage"),
    ("a-gas", "gas_leak", None, "gas_leak", "gas_leak"),
])
def test_each_leak_or_gas_fault_is_one_alarm_with_its_procedure_and_clears_after(
    device: str, fault: str, zone: int | None, alarm: str, procedure: str,
) -> None:
    raised, cleared, _ = simulate([(device, fault, zone)], fault_at_s=10, end_at_s=100,
                                  run_s=200)
    assert annunciated(raised) == {(device, alarm)}
    first = next(a for a in raised if a.alarm_type == alarm)
    assert first.procedure == procedure and first.at >= T0 + timedelta(seconds=10)
    assert (device, alarm) in {(c.source, c.alarm_type) for c in cleared}
    if zone is not None:
        assert first.detail["points"] == [f"zone_{zone}_leak"]


def test_a_gas_leak_groups_the_supply_loss_its_shut_valve_causes() -> None:
    raised, _, _ = simulate([("a-gas", "gas_leak", None)], fault_at_s=10, end_at_s=100,
                            run_s=150)
    assert annunciated(raised) == {("a-gas", "gas_leak")}
    consequences = {a.alarm_type: a.suppressed_by for a in raised if a.suppressed_by}
    assert consequences == {"gas_outage": ("a-gas", "gas_leak")}
    leak = next(a for a in raised if a.alarm_type == "gas_leak")
    assert leak.at < T0 + timedelta(seconds=25)  # 20 %LEL within about 10 s, no on-delay
