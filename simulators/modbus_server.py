"""Serves one simulated device over Modbus TCP with pymodbus' ModbusTcpServer.

`ModbusDeviceServer` listens on the device's host and port, answers for the device's unit
id with a SimDevice laid out from its profile (simulators.modbus_codec), and `publish`
writes new point values into the served tables through `server.async_setValues` (the
server keeps its own copy of the data). Each contiguous run of a table is written in one
call, so a multi-register value is never served half old, half new. `close` stops
listening and drops every client connection, so the port can be bound again at once."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import TracebackType

from pymodbus.server import ModbusTcpServer

from facility.profiles import ModbusProfile
from facility.site import Device, ModbusAddress
from simulators.errors import ServerStartError
from simulators.modbus_codec import FUNCTION_CODE, build_sim_device, contiguous_runs, encode_image
from simulators.models import PointValue

log = logging.getLogger(__name__)


class ModbusDeviceServer:
    def __init__(
        self,
        device: Device,
        initial: Mapping[str, PointValue],
        *,
        fill_gaps: bool = True,
    ) -> None:
        if not isinstance(device.profile, ModbusProfile) or not isinstance(
            device.config.address, ModbusAddress
        ):
            raise TypeError(f"device {device.id} is not a Modbus device")
        self.device_id = device.id
        self.profile: ModbusProfile = device.profile
        self.address: ModbusAddress = device.config.address
        self._sim_device = build_sim_device(
            self.profile, self.address.unit, initial, fill_gaps=fill_gaps
        )
        self._server: ModbusTcpServer | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.address.host}:{self.address.port}"

    async def start(self) -> None:
        server = ModbusTcpServer(self._sim_device, address=(self.address.host, self.address.port))
        try:
            await server.serve_forever(background=True)
        except RuntimeError as exc:
            await server.shutdown()  # type: ignore[no-untyped-call]
            raise ServerStartError(self.device_id, self.endpoint, str(exc)) from exc
        self._server = server
        log.info(
            "simulator %s serving Modbus TCP on %s unit %d",
            self.device_id,
            self.endpoint,
            self.address.unit,
        )

    async def publish(self, values: Mapping[str, PointValue]) -> None:
        """Serve these point values from now on."""
        if self._server is None:
            raise RuntimeError(f"simulator {self.device_id} is not started")
        unit = self.address.unit
        for table, image in encode_image(self.profile, values).items():
            for start, run in contiguous_runs(image):
                await self._server.async_setValues(unit, FUNCTION_CODE[table], start, run)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
            log.info("simulator %s stopped", self.device_id)

    async def __aenter__(self) -> ModbusDeviceServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
