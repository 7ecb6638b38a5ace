"""The Modbus adapter over pymodbus' AsyncModbusTcpClient (with gateway.rtu_line, the only
places pymodbus is imported on the gateway side).

``ModbusReader`` owns one connection to one Modbus TCP device and keeps one request in
flight; a unit on an RTU line (``line``) is read through the line instead, which every unit
of the line shares (one request at a time on the line); there a unit that stops answering is
tried again after a capped exponential backoff (``UnitSilent`` meanwhile, no line time
spent), so a dead unit costs the line one timeout now and then, not one per poll. Every
connect and request runs under ``facility.stopping.within(timeout_s, ...)`` (a timeout that cannot
lose the caller's cancellation to pymodbus' own ``wait_for``). Library failures become our
exceptions: ``TransportError`` (the connection is dropped and re-opened on the next read,
after a capped, jittered exponential backoff), ``DeviceTimeout`` (likewise: a late answer
must not be taken for the next request's), ``ProtocolError`` carrying the Modbus exception
code (the connection stays, no reconnect). A block refused with "illegal data address"
(code 2) is split and retried, so one bad register loses one point, not the device; a
request answered "server busy" (code 6) is retried up to ``busy_retries`` times after a
short pause; no other exception is retried. ``read(classes)`` reads the points of those
poll classes with a plan made once per set of classes (``ModbusOptions``: gap fill, maximum
request size, one request per point, a pause between requests) and returns the decoded
values by point name and the set of points that could not be read; it raises only when
nothing at all could be read."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from facility.messages import Value, utcnow
from facility.profiles import ModbusPoint, ModbusTable
from facility.site import ModbusAddress, ModbusOptions, ModbusRtuAddress
from facility.stopping import within
from gateway.backoff import Backoff
from gateway.counters import GatewayCounters
from gateway.decode import decode_point
from gateway.errors import DecodeError, DeviceTimeout, ProtocolError, TransportError, UnitSilent
from gateway.plan import ReadBlock, plan_reads, split
from gateway.reading import Reading
from gateway.rtu_line import RtuLine

log = logging.getLogger(__name__)

ILLEGAL_ADDRESS = 2
SERVER_BUSY = 6
BUSY_PAUSE_S = 0.05
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
SILENT_BACKOFF_MIN_S = 1.0  # a unit silent twice in a row waits this long, doubling
Send = Callable[[ReadBlock], Awaitable[ModbusPDU]]


class ModbusReader:
    """Reads every point of one Modbus device (TCP, or a unit of an RTU line), block by
    block."""

    def __init__(
        self, device_id: str, address: ModbusAddress | ModbusRtuAddress,
        points: Sequence[ModbusPoint], *, timeout_s: float, fill: int | None = None,
        options: ModbusOptions | None = None, counters: GatewayCounters | None = None,
        line: RtuLine | None = None, poll_interval_s: float = 1.0,
    ) -> None:
        self.device_id = device_id
        self._address = address
        self._line = line
        if line is not None:
            line.register(device_id, poll_interval_s)
        self._timeout_s = timeout_s
        self._options = options or ModbusOptions()
        if fill is not None:
            self._options = self._options.model_copy(update={"fill": fill})
        self._points = tuple(points)
        self._plans: dict[frozenset[str] | None, list[ReadBlock]] = {}
        self._all_classes = frozenset(p.poll_class for p in self._points)
        self._counters = counters
        self._client: AsyncModbusTcpClient | None = None
        self._reconnect = Backoff(BACKOFF_MIN_S, BACKOFF_MAX_S)
        # polls of a unit of a line that went unanswered: the second and later back off
        self._silence = Backoff(SILENT_BACKOFF_MIN_S, BACKOFF_MAX_S, jitter=0.75, free=1)

    @property
    def blocks(self) -> list[ReadBlock]:
        """The plan of a complete read."""
        return list(self._plan(None))

    def _plan(self, classes: Collection[str] | None) -> list[ReadBlock]:
        key = None if classes is None or self._all_classes <= set(classes) else frozenset(classes)
        plan = self._plans.get(key)
        if plan is None:
            o = self._options
            pts = [p for p in self._points if key is None or p.poll_class in key]
            plan = self._plans[key] = plan_reads(
                pts, fill=o.fill, max_registers=o.max_registers, max_bits=o.max_bits,
                one_per_point=o.one_request_per_point)
        return plan

    async def read(self, classes: Collection[str] | None = None) -> Reading:
        blocks = self._plan(classes)
        if self._line is not None:
            return await self._read_on_line(self._line, blocks, classes)
        client = await self._connected()
        try:
            return await self._read_blocks(self._sender(client), blocks, classes)
        except (TransportError, DeviceTimeout):
            self._drop()
            raise

    async def _read_on_line(self, line: RtuLine, blocks: list[ReadBlock],
                            classes: Collection[str] | None) -> Reading:
        loop = asyncio.get_running_loop()
        if (wait_s := self._silence.wait_s(loop.time())) > 0:
            raise UnitSilent(self.device_id, line.config.timeout_s, wait_s)
        unit = self._address.unit

        async def send(block: ReadBlock) -> ModbusPDU:
            return await line.request(self.device_id, unit, block.table, block.address,
                                      block.count)

        try:
            reading = await self._read_blocks(send, blocks, classes)
        except DeviceTimeout:
            self._silence.failed(loop.time())
            raise
        finally:
            line.report_poll(self.device_id)
        self._silence.succeeded()
        return reading

    def _sender(self, client: AsyncModbusTcpClient) -> Send:
        unit = self._address.unit

        async def send(block: ReadBlock) -> ModbusPDU:
            call = _READERS[block.table](client)
            try:  # a timeout that cannot lose a cancellation to pymodbus' wait_for
                pdu: ModbusPDU = await within(
                    self._timeout_s, call(block.address, count=block.count, device_id=unit))
                return pdu
            except TimeoutError as exc:
                raise DeviceTimeout(self.device_id, self._timeout_s) from exc
            except (ModbusException, OSError) as exc:
                raise TransportError(self.device_id, str(exc)) from exc

        return send

    async def _read_blocks(self, send: Send, blocks: list[ReadBlock],
                           classes: Collection[str] | None) -> Reading:
        values: dict[str, Value] = {}
        bad: set[str] = set()
        errors: list[ProtocolError] = []
        sent = [0]
        for block in blocks:
            await self._read_into(send, block, values, bad, errors, sent)
        if errors and not values:
            raise errors[-1]
        complete = classes is None or self._all_classes <= set(classes)
        return Reading(ts=utcnow(), values=values, bad=frozenset(bad), complete=complete,
                       requests=sent[0])

    async def close(self) -> None:
        self._drop()

    async def _connected(self) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        loop = asyncio.get_running_loop()
        if self._reconnect.wait_s(loop.time()) > 0:
            raise TransportError(self.device_id, "waiting to reconnect")
        a = self._address
        assert isinstance(a, ModbusAddress)
        client = AsyncModbusTcpClient(
            a.host, port=a.port, name=self.device_id, timeout=self._timeout_s * 2,
            retries=0, reconnect_delay=0,
        )
        try:  # a timeout that cannot lose a cancellation to pymodbus' wait_for
            ok = await within(self._timeout_s, client.connect())
        except TimeoutError:
            ok = False
        if not ok:
            client.close()
            self._reconnect.failed(loop.time())
            raise TransportError(self.device_id, f"cannot connect to {a.host}:{a.port}")
        self._reconnect.succeeded()
        self._client = client
        return client

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _read_into(
        self, send: Send, block: ReadBlock, values: dict[str, Value],
        bad: set[str], errors: list[ProtocolError], sent: list[int],
    ) -> None:
        try:
            data = await self._request_retrying(send, block, sent)
        except ProtocolError as exc:
            halves = split(block) if exc.code == ILLEGAL_ADDRESS else []
            if not halves:
                log.debug("%s: %s at %s %d+%d", self.device_id, exc.reason, block.table,
                          block.address, block.count)
                bad.update(p.name for p in block.points)
                errors.append(exc)
                return
            for half in halves:
                await self._read_into(send, half, values, bad, errors, sent)
            return
        for p in block.points:
            try:
                values[p.name] = decode_point(p, data[block.slice_of(p)])
            except DecodeError as exc:
                log.debug("%s: %s", self.device_id, exc)
                bad.add(p.name)

    async def _request_retrying(
        self, send: Send, block: ReadBlock, sent: list[int]
    ) -> Sequence[int] | Sequence[bool]:
        """One request (after the configured pause), retried only while the device is busy."""
        attempt = 0
        while True:
            if self._options.pause_ms and sent[0]:
                await asyncio.sleep(self._options.pause_ms / 1000)
            sent[0] += 1
            try:
                return await self._request(send, block)
            except ProtocolError as exc:
                if exc.code != SERVER_BUSY or attempt >= self._options.busy_retries:
                    raise
            attempt += 1
            if self._counters is not None:
                self._counters.busy_retries += 1
            await asyncio.sleep(BUSY_PAUSE_S * attempt)

    async def _request(self, send: Send, block: ReadBlock) -> Sequence[int] | Sequence[bool]:
        response = await send(block)
        if response.isError():
            code = int(response.exception_code)
            raise ProtocolError(self.device_id, f"Modbus exception {code}", code)
        if block.table in (ModbusTable.COIL, ModbusTable.DISCRETE):
            bits: Sequence[bool] = response.bits[: block.count]
            if len(bits) < block.count:
                raise ProtocolError(self.device_id, "short response")
            return bits
        if len(response.registers) < block.count:
            raise ProtocolError(self.device_id, "short response")
        return response.registers


_Read = Callable[..., Awaitable[ModbusPDU]]
_READERS: dict[ModbusTable, Callable[[Any], _Read]] = {
    ModbusTable.COIL: lambda c: c.read_coils,
    ModbusTable.DISCRETE: lambda c: c.read_discrete_inputs,
    ModbusTable.HOLDING: lambda c: c.read_holding_registers,
    ModbusTable.INPUT: lambda c: c.read_input_registers,
}
