"""Exceptions of the simulators, carrying the device and the reason."""

from __future__ import annotations


class ServerStartError(RuntimeError):
    """A simulator could not start listening."""

    def __init__(self, device_id: str, endpoint: str, reason: str) -> None:
        super().__init__(f"simulator {device_id} cannot listen on {endpoint}: {reason}")
        self.device_id = device_id
        self.endpoint = endpoint
        self.reason = reason


class UnknownDevices(ValueError):
    """Devices were asked for that the site does not have."""

    def __init__(self, site_id: str, device_ids: set[str]) -> None:
        super().__init__(f"site {site_id} has no device {', '.join(sorted(device_ids))}")
        self.site_id = site_id
        self.device_ids = device_ids
