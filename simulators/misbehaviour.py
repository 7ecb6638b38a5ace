"""Protocol misbehaviour of a simulated device, for gateway tests; pure logic, no I/O.

A `Behaviour` says how a device's server misbehaves: slow answers (`delay`), Modbus
exception responses (02 illegal address, 04 device failure, 06 busy) on chosen addresses or
at a rate, dropped connections (closed instead of answered) at a rate, requests never
answered (`mute`), and for BACnet a device without segmentation (with a small maximum APDU)
or without ReadPropertyMultiple, objects that refuse SubscribeCOV (`cov_refused`), and
objects that report their own condition (`points`: a reliability other than
no-fault-detected, which sets the fault flag, and out-of-service). The base behaviour comes
from a scenario's `simulation:` mapping; scenario steps (`slow`, `mute`,
`drop_connections`, `modbus_busy`, `modbus_device_failure`, `point_fault`,
`out_of_service`) overlay it for their duration (`effective`). `decide` turns the
behaviour and one Modbus request into what the server does, drawing from the given random
generator so a seeded run is repeatable."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from facility.durations import parse_duration
from facility.profiles import ModbusTable

ExceptionCode = Literal[2, 4, 6]
ILLEGAL_ADDRESS: ExceptionCode = 2
DEVICE_FAILURE: ExceptionCode = 4
BUSY: ExceptionCode = 6
# Modbus function code -> the table it addresses.
TABLE_OF_FUNCTION: dict[int, ModbusTable] = {
    1: ModbusTable.COIL,
    5: ModbusTable.COIL,
    15: ModbusTable.COIL,
    2: ModbusTable.DISCRETE,
    3: ModbusTable.HOLDING,
    6: ModbusTable.HOLDING,
    16: ModbusTable.HOLDING,
    23: ModbusTable.HOLDING,
    4: ModbusTable.INPUT,
}
# Scenario step faults that change the protocol behaviour rather than the device model.
MISBEHAVIOURS = ("slow", "mute", "drop_connections", "modbus_busy", "modbus_device_failure",
                 "point_fault", "out_of_service")
POINT_STEPS = ("point_fault", "out_of_service")  # steps on one BACnet object (`point`)
MODBUS_ONLY = ("exceptions", "exception_rate", "drop_rate")
BACNET_ONLY = ("segmentation", "max_apdu", "read_property_multiple", "cov_refused", "points")
BACNET_APDU_SIZES = (50, 128, 206, 480, 1024, 1476)
# BACnet's Reliability enumeration (ASHRAE 135), as bacpypes3 names its values
RELIABILITIES = (
    "no-fault-detected", "no-sensor", "over-range", "under-range", "open-loop",
    "shorted-loop", "no-output", "unreliable-other", "process-error", "multi-state-fault",
    "configuration-error", "communication-failure", "member-fault", "monitored-object-fault",
    "tripped", "lamp-failure", "activation-failure", "renew-dhcp-failure",
    "renew-fd-registration-failure", "restart-auto-negotiation-failure", "restart-failure",
    "proprietary-command-failure", "faults-listed", "referenced-object-fault",
    "multi-state-out-of-range",
)
DEFAULT_FAULT = "unreliable-other"


class PointStatus(BaseModel):
    """What one BACnet object says of itself: its reliability (anything but
    no-fault-detected sets its fault flag) and whether it is out of service."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reliability: str = "no-fault-detected"
    out_of_service: bool = False

    @field_validator("reliability")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in RELIABILITIES:
            raise ValueError(f"unknown reliability {v!r}; known: {', '.join(RELIABILITIES)}")
        return v


NORMAL_POINT = PointStatus()


class AddressException(BaseModel):
    """Requests that touch this table address are answered with this exception code."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: ModbusTable
    address: int = Field(ge=0, le=65535)
    code: ExceptionCode = ILLEGAL_ADDRESS


class Behaviour(BaseModel):
    """How one device's server misbehaves; the defaults behave well."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delay_s: float = Field(default=0.0, alias="delay", ge=0, le=60)
    mute: bool = False
    exceptions: tuple[AddressException, ...] = ()
    exception_rate: float = Field(default=0.0, ge=0, le=1)
    exception_code: ExceptionCode = BUSY
    drop_rate: float = Field(default=0.0, ge=0, le=1)
    segmentation: bool = True
    max_apdu: int = 1024
    read_property_multiple: bool = True
    cov_refused: frozenset[str] = frozenset()  # points whose objects refuse SubscribeCOV
    points: dict[str, PointStatus] = {}

    @field_validator("delay_s", mode="before")
    @classmethod
    def _duration(cls, v: object) -> object:
        return parse_duration(v)

    @field_validator("max_apdu")
    @classmethod
    def _apdu(cls, v: int) -> int:
        if v not in BACNET_APDU_SIZES:
            raise ValueError(f"max_apdu must be one of {BACNET_APDU_SIZES}")
        return v


WELL_BEHAVED = Behaviour()


@dataclass(frozen=True, slots=True)
class Overlay:
    """An active misbehaviour step: its name, for `slow` its delay, for a point step its
    point and (`point_fault`) reliability."""

    fault: str
    delay_s: float = 0.0
    point: str = ""
    reliability: str = DEFAULT_FAULT


def effective(base: Behaviour, overlays: Iterable[Overlay]) -> Behaviour:
    """The base behaviour with every active step's misbehaviour on top."""
    changes: dict[str, object] = {}
    delay_s = base.delay_s
    points = dict(base.points)
    for o in overlays:
        if o.fault in POINT_STEPS:
            status = points.get(o.point, NORMAL_POINT)
            points[o.point] = status.model_copy(update=(
                {"reliability": o.reliability} if o.fault == "point_fault"
                else {"out_of_service": True}))
            changes["points"] = points
        elif o.fault == "slow":
            delay_s = max(delay_s, o.delay_s)
            changes["delay_s"] = delay_s
        elif o.fault == "mute":
            changes["mute"] = True
        elif o.fault == "drop_connections":
            changes["drop_rate"] = 1.0
        elif o.fault in ("modbus_busy", "modbus_device_failure"):
            changes["exception_rate"] = 1.0
            changes["exception_code"] = BUSY if o.fault == "modbus_busy" else DEVICE_FAILURE
        else:
            raise ValueError(f"{o.fault} is not a misbehaviour")
    return base.model_copy(update=changes) if changes else base


class Action(StrEnum):
    ANSWER = "answer"
    EXCEPTION = "exception"
    DROP = "drop"  # close the connection without answering
    IGNORE = "ignore"  # never answer, keep the connection


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    delay_s: float = 0.0
    code: int = 0


ANSWER = Decision(Action.ANSWER)


def decide(
    behaviour: Behaviour, function_code: int, address: int, count: int, rng: random.Random
) -> Decision:
    """What the server does with one Modbus request (count: registers or bits)."""
    if behaviour == WELL_BEHAVED:
        return ANSWER
    delay = behaviour.delay_s
    if behaviour.mute:
        return Decision(Action.IGNORE, delay)
    if behaviour.drop_rate and rng.random() < behaviour.drop_rate:
        return Decision(Action.DROP, delay)
    table = TABLE_OF_FUNCTION.get(function_code)
    for e in behaviour.exceptions:
        if e.table is table and address <= e.address < address + max(count, 1):
            return Decision(Action.EXCEPTION, delay, e.code)
    if behaviour.exception_rate and rng.random() < behaviour.exception_rate:
        return Decision(Action.EXCEPTION, delay, behaviour.exception_code)
    return Decision(Action.ANSWER, delay)
