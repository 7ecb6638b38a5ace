"""Traction elevator model: pure logic driven by `step(now)`, deterministic for a seed.

The car waits at a landing, answers a random call, travels at rated speed, stops level at
the destination and cycles its doors (opening, open, closing) while passengers leave and
board. It only ever stops at a landing, so without a fault it never shows "stopped outside
the door zone with doors closed and passengers aboard".

Faults (`set_fault`), each with a code in `fault_code` (see FAULT_CODES):
- `entrapment`: the car stops between floors (`stuck_offset_m` past a landing when it was at
  one) with its doors closed and somebody aboard; the alarm button is pressed after
  `alarm_delay_s`.
- `stopped_outside_door_zone`: the same stop with an empty car (a leveling fault found on an
  empty run); service mode out of service.
- `door_open_while_moving`: the door lock contact reads open whenever the car travels.
- `overtravel`: the car runs past a terminal landing (`overtravel_m` above the top one, or
  below the bottom one if it was heading down) until the final limit switch stops it, on an
  empty run; out of service until the fault is reset, then it levels back to the landing.
- `controller_fault`: the drive (inverter) reports a fault, found by its check before a run:
  a run in progress ends normally at its landing, then the car never starts again; it
  opens its doors to let anybody aboard out and stays at the landing, doors closed, out of
  service, until the fault is reset.
Consequences from the rest of the building (`simulators.estate`):
- `set_power(False)`: the car stops wherever it is; between floors with passengers that is an
  entrapment (the alarm button follows); doors that were open stay open.
- `set_fire_recall(True)`: fire service: the car returns to the main floor (floor 1), opens
  its doors, passengers leave and it stays there until the recall ends.
When the last reason for a stop ends the car levels at low speed to the next floor in its
direction of travel, opens its doors and the passengers leave."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from simulators.models import PointValue, UnsupportedFault


class Phase(StrEnum):
    IDLE = "idle"  # at a landing, doors closed, waiting for a call
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"
    TRAVEL = "travel"
    STUCK = "stuck"  # stopped between floors by a fault or a power loss
    LEVELING = "leveling"  # released after a stop, creeping to a landing


class Direction:
    STOPPED = 0
    UP = 1
    DOWN = 2


class ServiceMode(IntEnum):
    """The profile's `service_mode` enum (GB/T 24476 service status)."""

    NORMAL = 0
    INSPECTION = 1
    FIRE_SERVICE = 2
    OUT_OF_SERVICE = 3


class FaultCode(IntEnum):
    """The controller's `fault_code`: 0 none; when several apply the lowest number wins."""

    NONE = 0
    POWER_LOST = 1  # mains supply lost (building power outage)
    DOOR_OPEN_WHILE_MOVING = 2  # door lock circuit open while the car runs
    SAFETY_CIRCUIT = 3  # emergency stop by the safety chain (entrapment)
    OUTSIDE_DOOR_ZONE = 4  # car stopped outside the door zone (leveling fault)
    DRIVE_FAULT = 5  # drive / inverter fault: the car does not start
    OVERTRAVEL = 6  # final limit switch: the car ran past a terminal landing


FAULT_CODES: dict[str, FaultCode] = {
    "power": FaultCode.POWER_LOST,
    "door_open_while_moving": FaultCode.DOOR_OPEN_WHILE_MOVING,
    "entrapment": FaultCode.SAFETY_CIRCUIT,
    "stopped_outside_door_zone": FaultCode.OUTSIDE_DOOR_ZONE,
    "controller_fault": FaultCode.DRIVE_FAULT,
    "overtravel": FaultCode.OVERTRAVEL,
}
FAULTS = ("entrapment", "stopped_outside_door_zone", "door_open_while_moving", "controller_fault",
          "overtravel")
_STOP_FAULTS = {"entrapment", "stopped_outside_door_zone", "overtravel"}


@dataclass(frozen=True, slots=True)
class ElevatorParams:
    floors: int = 12
    floor_height_m: float = 3.0
    rated_speed_mps: float = 1.6
    leveling_speed_mps: float = 0.3
    door_time_s: float = 2.0
    dwell_s: float = 4.0
    idle_min_s: float = 3.0
    idle_max_s: float = 20.0
    alarm_delay_s: float = 5.0
    stuck_offset_m: float = 0.8  # how far past a landing a fault stops the car
    overtravel_m: float = 0.4  # how far past a terminal landing the final limit stops it
    door_zone_m: float = 0.1
    capacity: int = 13
    kg_per_passenger: int = 75
    max_step_s: float = 0.1


_DOORS_CLOSED = {Phase.IDLE, Phase.TRAVEL, Phase.STUCK, Phase.LEVELING}
_MOVING = {Phase.TRAVEL, Phase.LEVELING}


class ElevatorModel:
    device_type = "elevator"

    def __init__(self, *, seed: int = 0, params: ElevatorParams | None = None) -> None:
        self.params = params or ElevatorParams()
        self._rng = random.Random(seed)
        self.position_m = 0.0
        self.phase = Phase.IDLE
        self._target_m = 0.0
        self._travel_dir = Direction.UP
        self.passengers = 0
        self._phase_until = self._idle_time(0.0)
        self.run_count = 0
        self.alarm_button = False
        self.faults: set[str] = set()
        self.powered = True
        self.fire_recall = False
        self._stop_causes: set[str] = set()  # why the car is STUCK: faults and/or "power"
        self._stuck_since: float | None = None
        self._evacuate = False
        self._last: float | None = None

    # -- public contract -------------------------------------------------------------

    def step(self, now: float) -> None:
        if self._last is None:
            # The first call fixes the time origin; the first wait was relative to it.
            self._last = now
            self._phase_until += now
            return
        while self._last < now:
            dt = min(self.params.max_step_s, now - self._last)
            self._last += dt
            self._advance(self._last, dt)

    def points(self) -> dict[str, PointValue]:
        moving = self.phase in _MOVING
        door_closed = self.phase in _DOORS_CLOSED
        if moving and "door_open_while_moving" in self.faults:
            door_closed = False
        return {
            "moving": moving,
            "door_closed": door_closed,
            "door_zone": self.in_door_zone,
            "alarm_button": self.alarm_button,
            "car_floor": self.floor,
            "direction": self._travel_dir if moving else Direction.STOPPED,
            "passengers": self.passengers,
            "load_kg": self.passengers * self.params.kg_per_passenger,
            "service_mode": int(self.service_mode),
            "fault_code": int(self.fault_code),
            "speed_mps": self._speed() if moving else 0.0,
            "run_count": self.run_count,
        }

    def set_fault(self, name: str, active: bool, zone: int | None = None) -> None:
        if name not in FAULTS:
            raise UnsupportedFault(self.device_type, name)
        if active == (name in self.faults):
            return
        if active:
            self.faults.add(name)
            if name in _STOP_FAULTS:
                self._stop(name)
        else:
            self.faults.discard(name)
            if name in _STOP_FAULTS:
                self._clear_stop(name)

    def set_power(self, powered: bool) -> None:
        """Mains supply of the building: without it the car stops where it is."""
        if powered == self.powered:
            return
        self.powered = powered
        if not powered:
            if self.phase in _MOVING and not self.in_door_zone:
                self._stop("power")
            elif self.phase in _MOVING:  # level enough: it stops right here
                self._enter(Phase.IDLE, self._last or 0.0)
        else:
            self._clear_stop("power")

    def set_fire_recall(self, active: bool) -> None:
        """Fire service (the building's fire panel in alarm): return to the main floor."""
        if active == self.fire_recall:
            return
        self.fire_recall = active
        if active and self.phase is Phase.TRAVEL and self._target_m != 0.0:
            self._target_m = 0.0
            self._travel_dir = Direction.DOWN

    # -- derived values --------------------------------------------------------------

    @property
    def floor(self) -> int:
        """1-based number of the nearest landing."""
        return round(self.position_m / self.params.floor_height_m) + 1

    @property
    def in_door_zone(self) -> bool:
        h = self.params.floor_height_m
        return abs(self.position_m - round(self.position_m / h) * h) <= self.params.door_zone_m

    @property
    def fault_code(self) -> FaultCode:
        causes = set(self.faults) | ({"power"} if not self.powered else set())
        codes = [FAULT_CODES[c] for c in causes]
        return min(codes) if codes else FaultCode.NONE

    @property
    def service_mode(self) -> ServiceMode:
        if self.phase is Phase.STUCK or not self.powered or "controller_fault" in self.faults:
            return ServiceMode.OUT_OF_SERVICE
        if self.fire_recall:
            return ServiceMode.FIRE_SERVICE
        return ServiceMode.NORMAL

    def _speed(self) -> float:
        if self.phase is Phase.LEVELING:
            return self.params.leveling_speed_mps
        return self.params.rated_speed_mps

    def _idle_time(self, now: float) -> float:
        if self.passengers:
            return now + 0.5
        return now + self._rng.uniform(self.params.idle_min_s, self.params.idle_max_s)

    # -- state machine ---------------------------------------------------------------

    def _advance(self, t: float, dt: float) -> None:
        p = self.params
        if self.phase is Phase.STUCK:
            if self._stuck_since is None:
                self._stuck_since = t
            trapped = self.passengers > 0
            self.alarm_button = trapped and t - self._stuck_since >= p.alarm_delay_s
        elif not self.powered:
            return  # everything stays where it is
        elif self.phase in _MOVING:
            self._move(t, dt)
        elif "controller_fault" in self.faults and self.phase is Phase.IDLE:
            self._park(t)
        elif self.fire_recall and self._recall(t):
            return
        elif t < self._phase_until:
            return
        elif self.phase is Phase.OPENING:
            self._exchange_passengers()
            self._enter(Phase.OPEN, t + p.dwell_s)
        elif self.phase is Phase.OPEN:
            self._enter(Phase.CLOSING, t + p.door_time_s)
        elif self.phase is Phase.CLOSING:
            self._enter(Phase.IDLE, self._idle_time(t))
        elif self.phase is Phase.IDLE:
            self._start_trip()

    def _park(self, t: float) -> None:
        """The drive does not start: let anybody aboard out, then stay at this landing."""
        if self.passengers:
            self._evacuate = True
            self._enter(Phase.OPENING, t + self.params.door_time_s)

    def _recall(self, t: float) -> bool:
        """Fire service at a landing; True when it has handled this step."""
        at_main = self.position_m == 0.0
        if self.phase is Phase.IDLE and not at_main:
            self._start_trip(0)
            return True
        if self.phase is Phase.IDLE:
            self._enter(Phase.OPENING, t + self.params.door_time_s)
            return True
        if self.phase is Phase.OPEN and at_main:
            self.passengers = 0
            return True  # parked with doors open until the recall ends
        return False

    def _enter(self, phase: Phase, until: float) -> None:
        self.phase = phase
        self._phase_until = until

    def _start_trip(self, dest: int | None = None) -> None:
        here = self.floor - 1
        if dest is None:
            dest = self._rng.choice([f for f in range(self.params.floors) if f != here])
        self._target_m = dest * self.params.floor_height_m
        self._travel_dir = Direction.UP if dest > here else Direction.DOWN
        self.run_count += 1
        self.phase = Phase.TRAVEL

    def _move(self, t: float, dt: float) -> None:
        remaining = self._target_m - self.position_m
        travel = self._speed() * dt
        if abs(remaining) <= travel:
            self.position_m = self._target_m
            self._enter(Phase.OPENING, t + self.params.door_time_s)
        else:
            self.position_m += math.copysign(travel, remaining)

    def _exchange_passengers(self) -> None:
        if self._evacuate or self.fire_recall:
            self.passengers = 0
            self._evacuate = False
            return
        self.passengers = self._rng.randint(0, min(5, self.params.capacity))

    # -- stops between floors --------------------------------------------------------

    def _stop(self, cause: str) -> None:
        self._stop_causes.add(cause)
        if self.phase is Phase.STUCK:
            if cause == "entrapment":
                self.passengers = max(self.passengers, self._rng.randint(1, 3))
            return
        if cause == "overtravel":
            self._place_past_terminal()
        elif cause != "power" and (self.phase is not Phase.TRAVEL or self.in_door_zone):
            self._place_outside_door_zone()
        if cause == "entrapment":
            self.passengers = max(self.passengers, self._rng.randint(1, 3))
        elif cause in ("stopped_outside_door_zone", "overtravel"):
            self.passengers = 0
        self.phase = Phase.STUCK
        self._stuck_since = None
        self.alarm_button = False

    def _place_outside_door_zone(self) -> None:
        """Put the car stuck_offset_m past its landing, inside the shaft."""
        p = self.params
        h = p.floor_height_m
        top_m = (p.floors - 1) * h
        up = self._travel_dir == Direction.UP if self.phase is Phase.TRAVEL else True
        landing = round(self.position_m / h) * h
        if not 0 <= landing + (p.stuck_offset_m if up else -p.stuck_offset_m) <= top_m:
            up = not up
        self._travel_dir = Direction.UP if up else Direction.DOWN
        self.position_m = landing + (p.stuck_offset_m if up else -p.stuck_offset_m)

    def _place_past_terminal(self) -> None:
        """Put the car overtravel_m beyond the terminal landing it was heading for."""
        p = self.params
        top_m = (p.floors - 1) * p.floor_height_m
        down = self.phase is Phase.TRAVEL and self._travel_dir == Direction.DOWN
        self._travel_dir = Direction.DOWN if down else Direction.UP
        self.position_m = -p.overtravel_m if down else top_m + p.overtravel_m

    def _clear_stop(self, cause: str) -> None:
        self._stop_causes.discard(cause)
        if self.phase is Phase.STUCK and not self._stop_causes and self.powered:
            self._release()

    def _release(self) -> None:
        h = self.params.floor_height_m
        level = self.position_m / h
        dest = math.ceil(level) if self._travel_dir == Direction.UP else math.floor(level)
        dest = min(max(dest, 0), self.params.floors - 1)
        self._target_m = dest * h
        self._travel_dir = Direction.UP if self._target_m > self.position_m else Direction.DOWN
        self._evacuate = True
        self.alarm_button = False
        self._stuck_since = None
        self.phase = Phase.LEVELING
