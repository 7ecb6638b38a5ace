"""Pump set and switchgear models: plausible values and their faults."""

from __future__ import annotations

import pytest

from simulators.models import UnsupportedFault, build_model
from simulators.models.pump_set import PumpSetModel
from simulators.models.switchgear import SwitchgearModel


def test_switchgear_reports_three_phases_and_counts_energy() -> None:
    gear = SwitchgearModel(seed=1)
    gear.step(0.0)
    before = gear.energy_kwh
    gear.step(3600.0)
    p = gear.points()
    for phase in (1, 2, 3):
        assert 225 <= float(p[f"voltage_l{phase}"]) <= 235
        assert 100 <= float(p[f"current_l{phase}"]) <= 260
    assert 0.9 <= float(p["power_factor"]) <= 1.0
    power = float(p["active_power_kw"])
    assert power == pytest.approx(
        3 * 230 * float(p["current_l1"]) * float(p["power_factor"]) / 1000, rel=0.1
    )
    assert gear.energy_kwh - before == pytest.approx(power, rel=0.5)  # about one hour of it
    assert p["incoming_breaker_closed"] is True


def test_power_outage_drops_supply_and_trips_incoming_breaker() -> None:
    gear = SwitchgearModel(seed=1)
    gear.step(0.0)
    gear.set_fault("power_outage", True)
    gear.step(10.0)
    energy = gear.energy_kwh
    p = gear.points()
    assert p["voltage_l1"] == p["current_l2"] == p["active_power_kw"] == 0.0
    assert p["incoming_breaker_closed"] is False
    gear.step(100.0)
    assert gear.energy_kwh == energy
    gear.set_fault("power_outage", False)
    assert gear.points()["incoming_breaker_closed"] is True


def test_pump_set_holds_pressure_and_rotates_duty_pump() -> None:
    pumps = PumpSetModel(seed=2, rotation_s=600.0)
    pumps.step(100.0)
    first = pumps.points()
    assert float(first["outlet_pressure"]) == pytest.approx(0.45, abs=0.01)
    assert 30 <= float(first["vfd_frequency"]) <= 50
    pumps.step(700.0)
    second = pumps.points()
    assert (
        first["pump_1_running"] != second["pump_1_running"]
        or first["pump_2_running"] != second["pump_2_running"]
    )
    assert second["run_hours_1"] >= first["run_hours_1"]


def test_water_outage_drains_tank_then_stops_the_pumps() -> None:
    pumps = PumpSetModel(seed=2)
    pumps.step(0.0)
    pumps.set_fault("water_outage", True)
    t = 0.0
    while pumps.points()["pump_1_running"] or pumps.points()["pump_2_running"]:
        t += 10.0
        pumps.step(t)
        assert t < 24 * 3600
    p = pumps.points()
    assert p["inlet_pressure"] == 0.0
    assert float(p["tank_level"]) <= pumps.dry_run_level_m
    falling = []
    for _ in range(6):  # the pressure falls over seconds as the riser drains
        t += 5.0
        pumps.step(t)
        falling.append(float(pumps.points()["outlet_pressure"]))
    assert falling == sorted(falling, reverse=True)
    assert falling[-1] < 0.1


def test_power_loss_stops_both_pumps_and_the_pressure_falls_then_recovers() -> None:
    pumps = PumpSetModel(seed=2)
    pumps.step(0.0)
    pumps.set_power(False)
    pumps.step(2.0)
    early = pumps.points()
    pumps.step(30.0)
    late = pumps.points()
    assert not early["pump_1_running"] and not early["pump_2_running"]
    assert early["vfd_frequency"] == 0.0
    assert 0.1 < float(early["outlet_pressure"]) < 0.45
    assert float(late["outlet_pressure"]) == pytest.approx(pumps.static_mpa, abs=0.01)
    pumps.set_power(True)
    pumps.step(60.0)
    assert float(pumps.points()["outlet_pressure"]) == pytest.approx(0.45, abs=0.01)


def test_pump_fault_names_the_pump_and_both_tripped_leaves_no_pump_running() -> None:
    pumps = PumpSetModel(seed=2)
    pumps.set_fault("pump_fault", True, zone=2)
    pumps.step(0.0)
    p = pumps.points()
    assert p["pump_2_fault"] is True and p["pump_1_fault"] is False
    assert p["pump_1_running"] is True and p["pump_2_running"] is False
    pumps.set_fault("pump_fault", True, zone=1)
    pumps.step(1.0)
    p = pumps.points()
    assert not p["pump_1_running"] and not p["pump_2_running"]
    with pytest.raises(ValueError, match="pump 3"):
        pumps.set_fault("pump_fault", True, zone=3)


def test_pump_fault_hands_over_to_the_other_pump() -> None:
    pumps = PumpSetModel(seed=2)
    pumps.set_fault("pump_fault", True)
    pumps.step(0.0)
    p = pumps.points()
    assert (
        p["pump_1_fault"] is True and p["pump_1_running"] is False and p["pump_2_running"] is True
    )


@pytest.mark.parametrize("device_type", ["pump_set", "switchgear"])
def test_unsupported_faults_are_refused(device_type: str) -> None:
    with pytest.raises(UnsupportedFault):
        build_model(device_type).set_fault("fire_alarm", True, 3)


def test_unknown_device_type_is_refused() -> None:
    with pytest.raises(ValueError, match="toaster"):
        build_model("toaster")
