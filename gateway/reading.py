"""What one poll of a device yields, and the interface every protocol adapter offers the
poller: ``read(classes)`` reads the points of those poll classes (None: every point) and
returns a ``Reading``, or raises a ``gateway.errors.DeviceError``."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from facility.messages import Value


@dataclass(frozen=True, slots=True)
class Reading:
    """Values by point name, the points that could not be read (or that the device itself
    calls unreliable), when they were read, whether every point of the device was due
    (``complete``), and the status flags a device reported of its points (BACnet's words,
    ``fault,open-loop``; only points with a flag set)."""

    ts: datetime
    values: dict[str, Value]
    bad: frozenset[str] = field(default_factory=frozenset)
    complete: bool = True
    requests: int = 0
    flags: dict[str, str] = field(default_factory=dict)


class DeviceReader(Protocol):
    device_id: str

    async def read(self, classes: Collection[str] | None = None) -> Reading: ...

    async def close(self) -> None: ...
