"""What one poll of a device yields, and the interface every protocol adapter offers the
poller: ``read()`` returns a ``Reading`` or raises a ``gateway.errors.DeviceError``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from facility.messages import Value


@dataclass(frozen=True, slots=True)
class Reading:
    """Values by point name, the points that could not be read, and when they were read."""

    ts: datetime
    values: dict[str, Value]
    bad: frozenset[str] = field(default_factory=frozenset)


class DeviceReader(Protocol):
    device_id: str

    async def read(self) -> Reading: ...

    async def close(self) -> None: ...
