"""Serves simulated devices over Modbus TCP with pymodbus' ModbusTcpServer.

`SimModbusServer` is a ModbusTcpServer whose connection handler first asks the unit's
`Behaviour` (simulators.misbehaviour) what to do with each request: answer, after a delay if
configured; answer with an exception response (02, 04, 06); drop the connection; or never
answer. A server may hold several units (a gateway in front of an RS-485 line, as the load
mode uses). `ModbusDeviceServer` serves one site device: it listens on the device's host and
port, answers for the device's unit id with a SimDevice laid out from its profile
(simulators.modbus_codec), and `publish` writes the point values that changed since the last
publish into the served tables through `server.async_setValues` (the server keeps its own
copy). Each contiguous run of changed registers is written in one call, so a multi-register
value is never served half old, half new. `close` stops listening and drops every client
connection, so the port can be bound again at once."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from pymodbus.framer import FramerType
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import SimDevice

from facility.profiles import ModbusProfile, ModbusTable
from facility.site import Device, ModbusAddress
from simulators.errors import ServerStartError
from simulators.misbehaviour import WELL_BEHAVED, Action, Behaviour, decide
from simulators.modbus_codec import (
    FUNCTION_CODE,
    TableImage,
    build_sim_device,
    contiguous_runs,
    encode_image,
)
from simulators.models import PointValue

log = logging.getLogger(__name__)


class MisbehavingHandler(ServerRequestHandler):
    """One client connection: plays the unit's behaviour before the normal answer."""

    server: SimModbusServer

    async def handle_request(self) -> None:
        pdu = self.last_pdu
        if not pdu:
            return
        behaviour = self.server.behaviours.get(pdu.dev_id, WELL_BEHAVED)
        decision = decide(
            behaviour, pdu.function_code, pdu.address, pdu.count, self.server.rng
        )
        self.server.requests += 1
        if decision.delay_s:
            self.server.held += 1
            try:
                await asyncio.sleep(decision.delay_s)
            finally:
                self.server.held -= 1
        if decision.action is Action.IGNORE:
            return
        if decision.action is Action.DROP:
            self.close()
            return
        if decision.action is Action.EXCEPTION:
            response = ExceptionResponse(
                pdu.function_code, decision.code, pdu.dev_id, pdu.transaction_id
            )
            self.server_send(response, self.last_addr)  # type: ignore[no-untyped-call]
            return
        self.last_pdu = pdu
        await super().handle_request()  # type: ignore[no-untyped-call]


class SimModbusServer(ModbusTcpServer):
    """A ModbusTcpServer whose units can misbehave (`behaviours` by unit id)."""

    def __init__(self, devices: SimDevice | list[SimDevice], address: tuple[str, int],
                 *, seed: int = 0, framer: FramerType = FramerType.SOCKET,
                 ignore_missing_devices: bool = False) -> None:
        super().__init__(devices, address=address, framer=framer,
                         ignore_missing_devices=ignore_missing_devices)
        self.behaviours: dict[int, Behaviour] = {}
        self.rng = random.Random(seed)
        self.requests = 0  # requests received (what a test counts to order events)
        self.held = 0  # requests being delayed right now

    def callback_new_connection(self) -> Any:
        return MisbehavingHandler(  # type: ignore[no-untyped-call]
            self, self.trace_packet, self.trace_pdu, self.trace_connect
        )


async def start_server(server: SimModbusServer, device_id: str, endpoint: str) -> None:
    """Listen; ServerStartError (and nothing left open) when the port cannot be bound."""
    try:
        await server.serve_forever(background=True)
    except RuntimeError as exc:
        await server.shutdown()  # type: ignore[no-untyped-call]
        raise ServerStartError(device_id, endpoint, str(exc)) from exc


def changed_runs(
    image: Mapping[ModbusTable, TableImage], last: Mapping[ModbusTable, TableImage]
) -> list[tuple[ModbusTable, int, Sequence[int | bool]]]:
    """(table, start, values) for the runs of addresses whose value differs from last."""
    runs: list[tuple[ModbusTable, int, Sequence[int | bool]]] = []
    for table, values in image.items():
        before = last.get(table, {})
        changed = {a: v for a, v in values.items() if before.get(a) != v}
        runs.extend((table, start, run) for start, run in contiguous_runs(changed))
    return runs


class ModbusDeviceServer:
    def __init__(
        self,
        device: Device,
        initial: Mapping[str, PointValue],
        *,
        fill_gaps: bool = True,
        behaviour: Behaviour = WELL_BEHAVED,
        seed: int = 0,
    ) -> None:
        if not isinstance(device.profile, ModbusProfile) or not isinstance(
            device.config.address, ModbusAddress
        ):
            raise TypeError(f"device {device.id} is not a Modbus device")
        self.device_id = device.id
        self.profile: ModbusProfile = device.profile
        self.address: ModbusAddress = device.config.address
        self._fill_gaps = fill_gaps
        self._values: dict[str, PointValue] = dict(initial)
        self._image = encode_image(self.profile, self._values)
        self._behaviour = behaviour
        self._seed = seed
        self._server: SimModbusServer | None = None

    @property
    def endpoint(self) -> str:
        return f"{self.address.host}:{self.address.port}"

    @property
    def behaviour(self) -> Behaviour:
        return self._behaviour

    @property
    def requests(self) -> int:
        """Requests received since the server started."""
        return self._server.requests if self._server is not None else 0

    @property
    def held(self) -> int:
        """Requests being delayed by the behaviour right now."""
        return self._server.held if self._server is not None else 0

    def set_behaviour(self, behaviour: Behaviour) -> None:
        """Misbehave like this from the next request on."""
        self._behaviour = behaviour
        if self._server is not None:
            self._server.behaviours[self.address.unit] = behaviour

    async def start(self) -> None:
        """Listen, serving the last published values."""
        sim_device = build_sim_device(
            self.profile, self.address.unit, self._values, fill_gaps=self._fill_gaps
        )
        server = SimModbusServer(
            sim_device, (self.address.host, self.address.port), seed=self._seed
        )
        server.behaviours[self.address.unit] = self._behaviour
        await start_server(server, self.device_id, self.endpoint)
        self._server = server
        self._image = encode_image(self.profile, self._values)
        log.info(
            "simulator %s serving Modbus TCP on %s unit %d",
            self.device_id,
            self.endpoint,
            self.address.unit,
        )

    async def publish(self, values: Mapping[str, PointValue]) -> None:
        """Serve these point values from now on (only changed registers are written)."""
        self._values.update(values)
        if self._server is None:
            return  # closed (comms loss): served again from start()
        image = encode_image(self.profile, self._values)
        unit = self.address.unit
        for table, start, run in changed_runs(image, self._image):
            await self._server.async_setValues(unit, FUNCTION_CODE[table], start, list(run))
        self._image = image

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
