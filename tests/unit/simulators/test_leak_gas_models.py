"""The leak detector and the gas detector models on a simulated clock (issue 16): a leak wets
its zone only, a flood raises the sump depth over the flooding threshold and drains after; a
gas leak alarms at 20 %LEL and shuts the valve (the supply pressure falls), latched until the
fault ends; a gas outage loses the pressure with the valve open and no gas."""

from __future__ import annotations

import pytest

from simulators.models import UnsupportedFault, build_model
from simulators.models.gas_detector import GasDetectorModel
from simulators.models.leak_detector import LeakDetectorModel

Points = dict[str, bool | int | float]


def run(model: LeakDetectorModel | GasDetectorModel, start: float, end: float,
        tick_s: float = 0.5) -> list[Points]:
    samples = []
    t = start
    while t <= end + 1e-9:
        model.step(t)
        samples.append(model.points())
        t = round(t + tick_s, 6)
    return samples


def test_a_quiet_leak_detector_is_dry() -> None:
    samples = run(LeakDetectorModel(seed=3), 0.0, 600.0, tick_s=5.0)
    for p in samples:
        assert not any(p[f"zone_{z}_leak"] for z in range(1, 5))
        assert int(p["water_depth"]) < 20  # the flooding rule's clear threshold


@pytest.mark.parametrize("zone", [1, 2, 3, 4])
def test_a_leak_wets_its_zone_only_and_dries_when_it_ends(zone: int) -> None:
    model = LeakDetectorModel()
    run(model, 0.0, 5.0)
    model.set_fault("water_leak", True, zone)
    during = run(model, 5.5, 60.0)
    for p in during:
        assert [z for z in range(1, 5) if p[f"zone_{z}_leak"]] == [zone]
        assert int(p["water_depth"]) < 20  # a leak is not a flood
    model.set_fault("water_leak", False, zone)
    assert not any(model.points()[f"zone_{z}_leak"] for z in range(1, 5))


def test_a_flood_raises_the_sump_depth_past_the_threshold_and_the_pump_drains_it() -> None:
    model = LeakDetectorModel()
    run(model, 0.0, 5.0)
    model.set_fault("flooding", True)
    during = run(model, 5.5, 95.0)
    depths = [int(p["water_depth"]) for p in during]
    assert depths == sorted(depths)
    assert next(i for i, d in enumerate(depths) if d > 50) * 0.5 < 20  # over 50 mm in 20 s
    assert max(depths) == 3 + 4 * 90  # from dry at 4 mm/s for the 90 s of the fault
    assert not any(p[f"zone_{z}_leak"] for p in during for z in range(1, 5))
    model.set_fault("flooding", False)
    after = run(model, 95.5, 200.0)
    assert int(after[-1]["water_depth"]) < 20


def test_zones_out_of_range_and_unknown_faults_are_refused() -> None:
    model = LeakDetectorModel()
    with pytest.raises(ValueError, match="zone 5"):
        model.set_fault("water_leak", True, 5)
    with pytest.raises(UnsupportedFault):
        model.set_fault("fire_alarm", True)
    with pytest.raises(UnsupportedFault):
        GasDetectorModel().set_fault("flooding", True)


def test_normal_gas_reads_no_gas_and_a_steady_supply() -> None:
    for p in run(GasDetectorModel(seed=5), 0.0, 600.0, tick_s=5.0):
        assert float(p["gas_concentration"]) < 1.0
        assert 1.9 < float(p["supply_pressure"]) < 2.1
        assert p["gas_alarm"] is False and p["valve_closed"] is False
        assert p["detector_fault"] is False


def test_a_gas_leak_alarms_at_20_lel_shuts_the_valve_and_latches_until_reset() -> None:
    model = GasDetectorModel(seed=5)
    run(model, 0.0, 5.0)
    model.set_fault("gas_leak", True)
    during = run(model, 5.5, 65.0)
    first = next(i for i, p in enumerate(during) if p["gas_alarm"])
    assert float(during[first]["gas_concentration"]) >= 20.0
    assert all(not p["valve_closed"] for p in during[:first])
    for p in during[first:]:  # alarm latched, valve shut, no pressure behind it
        assert p["gas_alarm"] is True and p["valve_closed"] is True
        assert float(p["supply_pressure"]) == 0.0
    assert float(during[-1]["gas_concentration"]) == pytest.approx(35.0, abs=0.6)
    model.set_fault("gas_leak", False)
    after = run(model, 65.5, 90.0)
    assert after[0]["gas_alarm"] is False and after[0]["valve_closed"] is False
    assert float(after[0]["supply_pressure"]) > 1.9
    assert float(after[-1]["gas_concentration"]) < 1.0


def test_a_gas_outage_loses_the_pressure_with_the_valve_open_and_no_gas() -> None:
    model = GasDetectorModel(seed=5)
    run(model, 0.0, 5.0)
    model.set_fault("gas_outage", True)
    for p in run(model, 5.5, 60.0):
        assert float(p["supply_pressure"]) == 0.0
        assert p["valve_closed"] is False and p["gas_alarm"] is False
        assert float(p["gas_concentration"]) < 1.0
    model.set_fault("gas_outage", False)
    assert float(model.points()["supply_pressure"]) > 1.9


def test_build_model_knows_the_new_types() -> None:
    assert build_model("leak_detector").device_type == "leak_detector"
    assert build_model("gas_detector").device_type == "gas_detector"
