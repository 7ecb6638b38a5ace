"""A Modbus RTU line (RS-485) shared by the readers of its units: one pymodbus client, a
serial port (``AsyncModbusSerialClient``) or a serial device server's TCP port carrying RTU
frames (``AsyncModbusTcpClient`` with the RTU framer), and one request at a time.

``RtuLine.request`` takes the line (a FIFO lock, so units take turns), waits out the t3.5
silent interval after the previous frame, sends one read and waits at most the line's
``timeout_s`` for the answer. A unit that does not answer costs that timeout and nothing
else: the line stays open (on a bus, silence is one unit's problem), and a late reply can
not be taken for the next request's (pymodbus clears its receive buffer at each request and
checks the unit id and CRC of the reply). A broken connection or port (``TransportError``)
is closed and re-opened at the next request after a capped, jittered exponential backoff.

The line knows its schedule: each unit's reader registers its poll interval and reports the
line time of each poll; when the units together need more of the line's time than there is
(``load`` > 1), the line says so once at WARNING (and once at INFO when it can keep up
again), and ``LineCounters.saturated`` is set for the metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from facility.profiles import ModbusTable
from facility.site_network import RtuLineConfig, split_host_port
from facility.stopping import within
from gateway.backoff import Backoff
from gateway.counters import LineCounters
from gateway.errors import DeviceTimeout, ProtocolError, TransportError

log = logging.getLogger(__name__)

BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0
SATURATED_ABOVE = 1.0
RECOVERED_BELOW = 0.9
METHODS = {ModbusTable.COIL: "read_coils", ModbusTable.DISCRETE: "read_discrete_inputs",
           ModbusTable.HOLDING: "read_holding_registers",
           ModbusTable.INPUT: "read_input_registers"}


class RtuLine:
    """One RS-485 line; ``request`` is the only way onto it."""

    def __init__(self, config: RtuLineConfig, counters: LineCounters | None = None) -> None:
        self.config = config
        self.id = config.id
        self.counters = counters or LineCounters()
        self._lock = asyncio.Lock()
        self._client: AsyncModbusSerialClient | AsyncModbusTcpClient | None = None
        self._quiet_at = 0.0  # loop time the line is silent long enough for a new frame
        self._reopen = Backoff(BACKOFF_MIN_S, BACKOFF_MAX_S)
        self._demand: dict[str, float] = {}  # device -> line seconds per second it needs
        self._used: dict[str, float] = {}  # device -> line seconds of its current poll
        self._intervals: dict[str, float] = {}

    def register(self, device_id: str, poll_interval_s: float) -> None:
        self._intervals[device_id] = poll_interval_s

    def report_poll(self, device_id: str) -> None:
        """One poll of this unit is over: its line time updates the line's load."""
        line_s = self._used.pop(device_id, 0.0)
        interval = self._intervals.get(device_id)
        if not interval:
            return
        self._demand[device_id] = line_s / interval
        load = sum(self._demand.values())
        self.counters.load = load
        if not self.counters.saturated and load > SATURATED_ABOVE:
            self.counters.saturated = True
            log.warning("RTU line %s cannot keep its schedule: its units need %.0f%% of the "
                        "line's time at %d baud; their polls will be skipped", self.id,
                        load * 100, self.config.baudrate)
        elif self.counters.saturated and load < RECOVERED_BELOW:
            self.counters.saturated = False
            log.info("RTU line %s keeps its schedule again (%.0f%% of its time)", self.id,
                     load * 100)

    async def request(self, device_id: str, unit: int, table: ModbusTable, address: int,
                      count: int) -> ModbusPDU:
        """One read of one unit: the pymodbus response (check ``isError()``)."""
        async with self._lock:
            loop = asyncio.get_running_loop()
            held = loop.time()
            try:
                return await self._request(device_id, unit, table, address, count)
            finally:
                self._used[device_id] = self._used.get(device_id, 0.0) + loop.time() - held

    async def _request(self, device_id: str, unit: int, table: ModbusTable, address: int,
                       count: int) -> ModbusPDU:
        client = await self._connected(device_id)
        loop = asyncio.get_running_loop()
        if (wait := self._quiet_at - loop.time()) > 0:
            await asyncio.sleep(wait)
        self.counters.requests += 1
        call = getattr(client, METHODS[table])
        try:  # a timeout that cannot lose a cancellation to pymodbus' wait_for
            response: ModbusPDU = await within(
                self.config.timeout_s, call(address, count=count, device_id=unit))
            return response
        except TimeoutError as exc:
            self.counters.timeouts += 1
            raise DeviceTimeout(device_id, self.config.timeout_s) from exc
        except (ConnectionException, OSError) as exc:
            self._drop()
            raise TransportError(device_id, f"line {self.id}: {exc}") from exc
        except ModbusException as exc:  # a garbled or foreign reply: this request only
            raise ProtocolError(device_id, f"line {self.id}: bad reply: {exc}") from exc
        finally:
            self._quiet_at = loop.time() + self.config.gap_s

    async def close(self) -> None:
        self._drop()

    async def _connected(self, device_id: str) -> AsyncModbusSerialClient | AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        loop = asyncio.get_running_loop()
        if self._reopen.wait_s(loop.time()) > 0:
            raise TransportError(device_id, f"line {self.id} down; waiting to reopen it")
        client = self._make_client()
        try:
            ok = await within(self.config.connect_timeout_s, client.connect())
        except TimeoutError:
            ok = False
        if not ok:
            client.close()
            self._reopen.failed(loop.time())
            if self._reopen.failures == 1:
                log.warning("RTU line %s: cannot open %s", self.id, self.config.endpoint)
            raise TransportError(device_id, f"line {self.id}: cannot open "
                                            f"{self.config.endpoint}")
        if self._reopen.failures:
            log.info("RTU line %s: %s open again", self.id, self.config.endpoint)
        self._reopen.succeeded()
        self.counters.opens += 1
        self._client = client
        return client

    def _make_client(self) -> AsyncModbusSerialClient | AsyncModbusTcpClient:
        c = self.config
        # pymodbus' own timeout stays above ours: a silent unit must not make it count
        # "no response" towards closing the line for every unit
        timeout = max(c.timeout_s * 4, c.connect_timeout_s)
        if c.server is not None:
            host, port = split_host_port(c.server, 0)
            return AsyncModbusTcpClient(host, port=port, framer=FramerType.RTU, name=c.id,
                                        timeout=timeout, retries=0, reconnect_delay=0)
        return AsyncModbusSerialClient(c.serial or "", framer=FramerType.RTU, name=c.id,
                                       baudrate=c.baudrate, parity=c.parity,
                                       stopbits=c.stopbits, bytesize=c.bytesize,
                                       timeout=timeout, retries=0, reconnect_delay=0)

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def frame_chars(table: ModbusTable, count: int) -> int:
    """Characters on the wire for one read: request (8) plus normal reply."""
    data = count * 2 if table in (ModbusTable.HOLDING, ModbusTable.INPUT) else (count + 7) // 8
    return 8 + 5 + data


def ideal_polls_per_s(config: RtuLineConfig, requests: Sequence[tuple[ModbusTable, int]]
                      ) -> float:
    """Polls per second of one unit's reads that the line's speed allows at best: the
    request and reply characters plus a t3.5 gap after each, nothing else."""
    seconds = sum(frame_chars(t, n) * config.char_s + 2 * config.gap_s for t, n in requests)
    return 1.0 / seconds
