"""Traction elevator model: pure logic driven by `step(now)`, deterministic for a seed.

The car waits at a landing, answers a random call, travels at rated speed, stops level at
the destination and cycles its doors (opening, open, closing) while passengers leave and
board. It only ever stops at a landing, so without a fault it never shows "stopped outside
the door zone with doors closed and passengers aboard". Fault `entrapment` stops the car
between floors (`stuck_offset_m` past a landing when it was at one) with its doors closed
and somebody aboard, and the alarm button is pressed after `alarm_delay_s`; when the fault
ends the car levels at low speed to the next floor in its direction of travel, opens its
doors and the passengers leave."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from enum import StrEnum

from simulators.models import PointValue, UnsupportedFault


class Phase(StrEnum):
    IDLE = "idle"  # at a landing, doors closed, waiting for a call
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"
    TRAVEL = "travel"
    STUCK = "stuck"  # entrapment: stopped between floors
    LEVELING = "leveling"  # released after an entrapment, creeping to a landing


class Direction:
    STOPPED = 0
    UP = 1
    DOWN = 2


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
    stuck_offset_m: float = 0.8  # how far past a landing an entrapment stops the car
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
        return {
            "moving": moving,
            "door_closed": self.phase in _DOORS_CLOSED,
            "door_zone": self.in_door_zone,
            "alarm_button": self.alarm_button,
            "car_floor": self.floor,
            "direction": self._travel_dir if moving else Direction.STOPPED,
            "passengers": self.passengers,
            "load_kg": self.passengers * self.params.kg_per_passenger,
            "service_mode": 0,
            "fault_code": 0,
            "speed_mps": self._speed() if moving else 0.0,
            "run_count": self.run_count,
        }

    def set_fault(self, name: str, active: bool, zone: int | None = None) -> None:
        if name != "entrapment":
            raise UnsupportedFault(self.device_type, name)
        if active and self.phase is not Phase.STUCK:
            self._entrap()
        elif not active and self.phase is Phase.STUCK:
            self._release()

    # -- derived values --------------------------------------------------------------

    @property
    def floor(self) -> int:
        """1-based number of the nearest landing."""
        return round(self.position_m / self.params.floor_height_m) + 1

    @property
    def in_door_zone(self) -> bool:
        h = self.params.floor_height_m
        return abs(self.position_m - round(self.position_m / h) * h) <= self.params.door_zone_m

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
        if self.phase in _MOVING:
            self._move(t, dt)
        elif self.phase is Phase.STUCK:
            if self._stuck_since is None:
                self._stuck_since = t
            self.alarm_button = t - self._stuck_since >= p.alarm_delay_s
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

    def _enter(self, phase: Phase, until: float) -> None:
        self.phase = phase
        self._phase_until = until

    def _start_trip(self) -> None:
        here = self.floor - 1
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
        if self._evacuate:
            self.passengers = 0
            self._evacuate = False
            return
        self.passengers = self._rng.randint(0, min(5, self.params.capacity))

    # -- entrapment ------------------------------------------------------------------

    def _entrap(self) -> None:
        p = self.params
        h = p.floor_height_m
        top_m = (p.floors - 1) * h
        if self.phase is not Phase.TRAVEL or self.in_door_zone:
            # Stop the car stuck_offset_m past the landing, inside the shaft.
            up = self._travel_dir == Direction.UP if self.phase is Phase.TRAVEL else True
            landing = round(self.position_m / h) * h
            if not 0 <= landing + (p.stuck_offset_m if up else -p.stuck_offset_m) <= top_m:
                up = not up
            self._travel_dir = Direction.UP if up else Direction.DOWN
            self.position_m = landing + (p.stuck_offset_m if up else -p.stuck_offset_m)
        self.passengers = max(self.passengers, self._rng.randint(1, 3))
        self.phase = Phase.STUCK
        self._stuck_since = None
        self.alarm_button = False

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
