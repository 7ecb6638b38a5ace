"""The gateway's exceptions: what went wrong talking to a device, classified so the poller
knows what to do (reconnect on transport errors, keep the connection on a protocol error,
count timeouts) and the operator reads why. Every exception carries the device id."""

from __future__ import annotations


class DeviceError(Exception):
    """A poll of ``device_id`` failed; ``kind`` names the class for counters and logs."""

    kind = "error"

    def __init__(self, device_id: str, reason: str) -> None:
        self.device_id = device_id
        self.reason = reason
        super().__init__(f"device {device_id}: {reason}")


class TransportError(DeviceError):
    """The connection failed or broke; the adapter reconnects (with backoff) next time."""

    kind = "transport"


class AddressUnresolved(DeviceError):
    """The device's address is not known: a BACnet device instance no I-Am answered for."""

    kind = "unresolved"


class DeviceTimeout(DeviceError):
    """No answer within the device's timeout."""

    kind = "timeout"

    def __init__(self, device_id: str, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        super().__init__(device_id, f"no answer within {timeout_s:g} s")


class UnitSilent(DeviceTimeout):
    """A unit of an RTU line that stopped answering, not asked again until its backoff ends
    (so that it does not take the line's time from the others)."""

    def __init__(self, device_id: str, timeout_s: float, retry_in_s: float) -> None:
        super().__init__(device_id, timeout_s)
        self.reason = f"silent; asked again in {retry_in_s:.0f} s"
        self.args = (f"device {device_id}: {self.reason}",)


class ProtocolError(DeviceError):
    """The device answered with an error (a Modbus exception code, a BACnet error, reject or
    abort); the connection stays up. ``code`` is the Modbus exception code (0 for BACnet)."""

    kind = "protocol"

    def __init__(self, device_id: str, reason: str, code: int = 0) -> None:
        self.code = code
        super().__init__(device_id, reason)


class DecodeError(ValueError):
    """A value read could not be turned into a point value (NaN, infinity, bad length)."""

    def __init__(self, point: str, reason: str) -> None:
        self.point = point
        self.reason = reason
        super().__init__(f"point {point}: {reason}")
