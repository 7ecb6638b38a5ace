"""Plays a scenario's timed faults; pure logic, no I/O and no clock.

`ScenarioRunner.due(elapsed_s)` returns, once each and in time order, the fault events whose
time has come: a step starts at `at_s` after the simulators started and ends `duration_s`
later (never, without a duration). At equal times an end comes before a start, so a fault
can be re-armed back to back. `apply_event` hands an event to the device's model and logs
"fault entrapment on a-elevator-2 started" / "... ended"; a fault the model cannot play is
logged and skipped, never fatal. Steps naming devices that are not simulated here are
dropped with one log line. Protocol misbehaviour steps (`slow`, `mute`, ...) come due the
same way; the runner plays them on the device's server, not on its model. The scenario is a
simulators.scenario `Scenario`."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from simulators.models import DeviceModel, UnsupportedFault
from simulators.scenario import Scenario

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FaultEvent:
    at_s: float
    device: str
    fault: str
    active: bool
    zone: int | None = None
    delay_s: float | None = None
    point: str | None = None
    reliability: str | None = None

    def describe(self) -> str:
        zone = f" zone {self.zone}" if self.zone is not None else ""
        point = f" of {self.point}" if self.point is not None else ""
        return (f"fault {self.fault}{zone}{point} on {self.device} "
                f"{'started' if self.active else 'ended'}")


class ScenarioRunner:
    def __init__(self, scenario: Scenario | None, devices: Collection[str]) -> None:
        events: list[FaultEvent] = []
        for step in (scenario.steps if scenario is not None else ()):
            if step.device not in devices:
                log.info(
                    "scenario step %s on %s skipped: not simulated here", step.fault, step.device
                )
                continue
            delay = step.slow_delay_s if step.fault == "slow" else None
            extra = (step.zone, delay, step.point, step.reliability)
            events.append(FaultEvent(step.at_s, step.device, step.fault, True, *extra))
            if step.duration_s is not None:
                end = step.at_s + step.duration_s
                events.append(FaultEvent(end, step.device, step.fault, False, *extra))
        events.sort(key=lambda e: (e.at_s, e.active))
        self._pending = events

    @property
    def finished(self) -> bool:
        return not self._pending

    def due(self, elapsed_s: float) -> list[FaultEvent]:
        """Events whose time is at or before elapsed_s and that were not returned before."""
        count = 0
        while count < len(self._pending) and self._pending[count].at_s <= elapsed_s:
            count += 1
        due, self._pending = self._pending[:count], self._pending[count:]
        return due


def apply_event(event: FaultEvent, models: Mapping[str, DeviceModel]) -> bool:
    """Set or clear the fault on the device's model; False (logged) if it could not."""
    try:
        models[event.device].set_fault(event.fault, event.active, event.zone)
    except (UnsupportedFault, ValueError) as exc:
        log.error("%s: not simulated: %s", event.describe(), exc)
        return False
    log.info("%s", event.describe())
    return True
