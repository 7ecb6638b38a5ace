"""The faults that let every built-in rule be played from a scenario, on a simulated clock:
the elevator's controller (drive) fault and overtravel, the pump set's high pressure, VFD
trip and low break tank, two fire zones in alarm at once; and the fault list itself (every
fault a scenario may name is one some model plays, for every device type the list allows)."""

from __future__ import annotations

import pytest

from simulators.models import build_model
from simulators.models.elevator import ElevatorModel, FaultCode, Phase, ServiceMode
from simulators.models.fire_panel import PANEL_ALARM, FirePanelModel
from simulators.models.pump_set import PumpSetModel
from simulators.scenario import FAULT_DEVICE_TYPES

TICK_S = 0.2
Points = dict[str, bool | int | float]


def run(model: ElevatorModel | PumpSetModel, start: float, end: float,
        tick_s: float = TICK_S) -> list[Points]:
    samples = []
    t = start
    while t <= end + 1e-9:
        model.step(t)
        samples.append(model.points())
        t = round(t + tick_s, 6)
    return samples


def travelling_with_passengers(seed: int) -> tuple[ElevatorModel, float]:
    model = ElevatorModel(seed=seed)
    t = 0.0
    while not (model.phase is Phase.TRAVEL and not model.in_door_zone and model.passengers):
        t = round(t + TICK_S, 6)
        model.step(t)
        assert t < 3600
    return model, t


# -- elevator: controller (drive) fault -------------------------------------------------


def test_controller_fault_ends_the_run_lets_people_out_and_parks_the_car() -> None:
    model, t = travelling_with_passengers(seed=11)
    model.set_fault("controller_fault", True)
    during = run(model, t + TICK_S, t + 300)
    assert int(FaultCode.DRIVE_FAULT) == 5  # the code table in docs/simulators.md
    assert all(p["fault_code"] == FaultCode.DRIVE_FAULT for p in during)
    assert all(p["service_mode"] == ServiceMode.OUT_OF_SERVICE for p in during)
    # the run in progress ends level at its landing and the doors open there ...
    opened = next(i for i, p in enumerate(during) if not p["door_closed"])
    assert during[opened]["door_zone"] and not during[opened]["moving"]
    assert not any(p["moving"] for p in during[opened:])  # ... and it never starts again
    parked = during[-100:]
    for p in parked:  # empty, doors closed, level: no entrapment, no door-zone fault
        assert p["door_zone"] and p["door_closed"] and p["passengers"] == 0
        assert p["alarm_button"] is False and p["speed_mps"] == 0.0
    runs = model.run_count
    model.set_fault("controller_fault", False)
    after = run(model, t + 300.2, t + 400)
    assert model.run_count > runs and any(p["moving"] for p in after)
    assert all(p["fault_code"] == 0 and p["service_mode"] == ServiceMode.NORMAL for p in after)


@pytest.mark.parametrize("seed", [3, 11, 29])
def test_overtravel_stops_the_car_past_a_terminal_landing_until_reset(seed: int) -> None:
    model, t = travelling_with_passengers(seed=seed)
    heading_down = model._travel_dir == 2
    model.set_fault("overtravel", True)
    during = run(model, t + TICK_S, t + 60)
    top = model.params.floors
    assert int(FaultCode.OVERTRAVEL) == 6  # the code table in docs/simulators.md
    for p in during:  # stopped beyond the terminal landing, empty, out of service
        assert p["fault_code"] == FaultCode.OVERTRAVEL and not p["moving"]
        assert not p["door_zone"] and p["door_closed"] and p["passengers"] == 0
        assert p["service_mode"] == ServiceMode.OUT_OF_SERVICE
        assert p["car_floor"] == (1 if heading_down else top)
    assert model.position_m < 0 if heading_down else model.position_m > (top - 1) * 3.0
    model.set_fault("overtravel", False)
    after = run(model, t + 60.2, t + 120)
    back = next(i for i, p in enumerate(after) if not p["door_closed"])  # levels, opens
    assert after[back]["door_zone"] and after[back]["car_floor"] == (1 if heading_down else top)
    assert all(p["fault_code"] == 0 for p in after)


def test_controller_fault_at_a_landing_keeps_the_car_there_even_on_fire_recall() -> None:
    model = ElevatorModel(seed=2)
    model.step(0.0)
    model.set_fault("controller_fault", True)
    model.set_fire_recall(True)
    during = run(model, 0.2, 120.0)
    assert model.run_count == 0
    assert all(not p["moving"] and p["door_zone"] for p in during)
    # a lower code wins when several apply: the power loss is shown first
    model.set_power(False)
    assert model.points()["fault_code"] == FaultCode.POWER_LOST


# -- pump set -------------------------------------------------------------------------


def test_high_pressure_runs_the_vfd_flat_out_and_the_outlet_rises() -> None:
    pumps = PumpSetModel(seed=2)
    run(pumps, 0.0, 10.0)
    pumps.set_fault("high_pressure", True)
    during = run(pumps, 10.2, 60.0)
    late = during[-1]
    assert late["vfd_frequency"] == 50.0
    assert float(late["outlet_pressure"]) > 1.2 * pumps.setpoint_mpa  # the rule's threshold
    assert float(late["outlet_pressure"]) == pytest.approx(1.35 * 0.45, abs=0.01)
    assert late["pump_1_running"] or late["pump_2_running"]
    assert late["vfd_fault"] is False
    pumps.set_fault("high_pressure", False)
    after = run(pumps, 60.2, 100.0)
    assert float(after[-1]["outlet_pressure"]) == pytest.approx(0.45, abs=0.01)
    assert float(after[-1]["vfd_frequency"]) < 50.0


def test_vfd_trip_stops_both_pumps_and_the_pressure_falls() -> None:
    pumps = PumpSetModel(seed=2)
    run(pumps, 0.0, 10.0)
    pumps.set_fault("vfd_fault", True)
    during = run(pumps, 10.2, 60.0)
    assert all(p["vfd_fault"] is True for p in during)
    assert all(not p["pump_1_running"] and not p["pump_2_running"] for p in during)
    assert all(p["vfd_frequency"] == 0.0 for p in during)
    assert not p_any_pump_fault(during)  # the pumps themselves are sound
    pressures = [float(p["outlet_pressure"]) for p in during]
    assert pressures == sorted(pressures, reverse=True)
    assert pressures[-1] < 0.8 * pumps.setpoint_mpa  # a low pressure follows
    pumps.set_fault("vfd_fault", False)
    after = run(pumps, 60.2, 100.0)
    assert after[-1]["vfd_fault"] is False
    assert float(after[-1]["outlet_pressure"]) == pytest.approx(0.45, abs=0.01)


def p_any_pump_fault(samples: list[Points]) -> bool:
    return any(p["pump_1_fault"] or p["pump_2_fault"] for p in samples)


def test_tank_level_low_drains_the_tank_to_the_stuck_valve_and_holds_it_there() -> None:
    pumps = PumpSetModel(seed=2)
    run(pumps, 0.0, 10.0)
    assert pumps.points()["tank_level"] == pytest.approx(2.5)
    pumps.set_fault("tank_level_low", True)
    during = run(pumps, 10.2, 3600.0, tick_s=1.0)
    levels = [float(p["tank_level"]) for p in during]
    assert levels[:30] == sorted(levels[:30], reverse=True)  # falls at the draw rate
    low = [lvl for lvl in levels if lvl < 1.0]
    assert low, "the level never fell below the 1.0 m low-level alarm"
    settled = levels[levels.index(low[0]):]
    # below the low-level alarm, above the water outage (0.5 m) and dry run (0.3 m)
    assert all(0.5 < lvl < 1.0 for lvl in settled)
    for p in during:  # the municipal supply and the pumps are fine: not a water outage
        assert float(p["inlet_pressure"]) > 0.1
        assert p["pump_1_running"] or p["pump_2_running"]
        assert float(p["outlet_pressure"]) == pytest.approx(0.45, abs=0.02)
    pumps.set_fault("tank_level_low", False)
    after = run(pumps, 3601.0, 3700.0, tick_s=1.0)
    assert float(after[-1]["tank_level"]) == pytest.approx(2.5)


def test_tank_drains_faster_with_demand_and_only_while_a_pump_runs() -> None:
    pumps = PumpSetModel(seed=2)
    run(pumps, 0.0, 1.0)
    pumps.set_fault("water_outage", True)
    pumps.set_fault("vfd_fault", True)  # nothing runs: nothing is drawn
    run(pumps, 1.2, 60.0)
    assert pumps.tank_level_m == pytest.approx(2.5)
    pumps.set_fault("vfd_fault", False)
    level = pumps.tank_level_m
    run(pumps, 60.2, 70.0)
    assert level - pumps.tank_level_m == pytest.approx(
        pumps.draw_mps * pumps._demand() * 10.0, rel=0.05)


# -- fire panel: two zones make a probable fire ---------------------------------------


def test_two_zones_of_one_panel_in_alarm_show_both_and_clear_one_by_one() -> None:
    panel = FirePanelModel()
    panel.set_fault("fire_alarm", True, zone=1)
    panel.set_fault("fire_alarm", True, zone=2)
    points = panel.points()
    assert points["zone_1_alarm"] is True and points["zone_2_alarm"] is True
    assert points["panel_state"] == PANEL_ALARM
    panel.set_fault("fire_alarm", False, zone=1)
    points = panel.points()
    assert points["zone_1_alarm"] is False and points["zone_2_alarm"] is True
    assert points["panel_state"] == PANEL_ALARM


# -- the fault list -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "device_type"),
    [(f, t) for f, types in FAULT_DEVICE_TYPES.items() if f != "comms_loss" for t in types],
)
def test_every_listed_fault_is_played_by_the_model_of_each_device_type(
    fault: str, device_type: str,
) -> None:
    model, twin = build_model(device_type, seed=1), build_model(device_type, seed=1)
    model.step(0.0)
    twin.step(0.0)
    model.set_fault(fault, True, None)
    for t in range(1, 121):
        model.step(float(t))
        twin.step(float(t))
    # the fault shows in the values a client reads, against the same device without it
    assert model.points() != twin.points()
