"""The fire panel model: zone signals and panel state follow the faults."""

from __future__ import annotations

import pytest

from simulators.models import UnsupportedFault
from simulators.models.fire_panel import FirePanelModel


def test_normal_panel_has_every_zone_quiet() -> None:
    points = FirePanelModel().points()
    assert points["panel_state"] == 1
    assert len(points) == 4 * 3 + 1
    assert not any(v for k, v in points.items() if k != "panel_state")


def test_fire_alarm_in_zone_3_sets_that_zone_only_and_clears() -> None:
    panel = FirePanelModel()
    panel.set_fault("fire_alarm", True, zone=3)
    panel.step(10.0)
    points = panel.points()
    assert points["zone_3_alarm"] is True
    assert points["panel_state"] == 2
    assert [k for k, v in points.items() if v is True] == ["zone_3_alarm"]
    panel.set_fault("fire_alarm", False, zone=3)
    assert panel.points()["zone_3_alarm"] is False
    assert panel.points()["panel_state"] == 1


def test_alarm_outranks_trouble_in_panel_state() -> None:
    panel = FirePanelModel()
    panel.set_fault("fire_trouble", True, zone=2)
    assert panel.points()["panel_state"] == 3
    panel.set_fault("fire_alarm", True)  # no zone: zone 1
    assert panel.points()["zone_1_alarm"] is True
    assert panel.points()["panel_state"] == 2
    panel.set_fault("fire_alarm", False)
    assert panel.points()["panel_state"] == 3


def test_bad_zone_and_unknown_fault_are_refused() -> None:
    with pytest.raises(ValueError, match="zone 5"):
        FirePanelModel().set_fault("fire_alarm", True, zone=5)
    with pytest.raises(UnsupportedFault):
        FirePanelModel().set_fault("entrapment", True)
