"""Simulated Modbus RTU lines: several units (unit ids) on one RS-485 line, served with
pymodbus' RTU framer either by a serial device server (RTU frames over TCP) or on a
pseudo-terminal pair (a real serial path for a serial client such as pymodbus' or mbpoll).

The line's speed is played: a frame takes its characters times ``bits_per_char / baud``
on the wire, and one frame at a time travels on a line. Over TCP, ``RtuTcpLineServer``
answers each request after the time the request, the t3.5 silent interval and the reply
take on the wire, one request at a time per line. On a pty pair, ``PtyWire`` joins the
simulator's end and the client's end and delivers each byte at the baud rate, in both
directions; its client end can be given a fixed path (a symlink, as a udev rule names a USB
adapter). A unit id the line does not hold, or a unit taken off the line (``silence``),
never answers, like a dead unit on a bus.

``RtuLineSim`` serves one line of a site (a gateway's ``lines`` entry) for the units the
site puts on it; ``RtuUnitServer`` is one unit's handle on it, the simulators' per-device
server interface (start, publish, close: close silences the unit)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import tty
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import SimDevice

from facility.profiles import ModbusProfile
from facility.site import Device, ModbusRtuAddress, Site
from facility.site_network import RtuLineConfig, split_host_port
from simulators.errors import ServerStartError
from simulators.misbehaviour import WELL_BEHAVED, Behaviour
from simulators.modbus_codec import FUNCTION_CODE, build_sim_device, encode_image
from simulators.modbus_server import MisbehavingHandler, SimModbusServer, changed_runs
from simulators.models import PointValue

log = logging.getLogger(__name__)

REQUEST_CHARS = 8  # unit, function, address (2), count (2), CRC (2)


def reply_chars(function_code: int, count: int) -> int:
    """Characters of a normal reply to a read: unit, function, byte count, data, CRC."""
    if function_code in (1, 2):
        return 5 + (count + 7) // 8
    if function_code in (3, 4):
        return 5 + 2 * count
    return 8


class _SilencingHandler(MisbehavingHandler):
    """On a pty line the wire paces the bytes; a unit off the line never answers."""

    server: SerialLineServer  # type: ignore[assignment]

    async def handle_request(self) -> None:
        pdu = self.last_pdu
        if pdu and pdu.dev_id not in self.server.silent:
            await super().handle_request()


class SerialLineServer(ModbusSerialServer):
    """The units of one line on a serial port (the simulator's end of a ``PtyWire``)."""

    def __init__(self, devices: list[SimDevice], config: RtuLineConfig, port: str) -> None:
        super().__init__(devices, framer=FramerType.RTU, port=port, baudrate=config.baudrate,
                         parity=config.parity, stopbits=config.stopbits,
                         bytesize=config.bytesize, ignore_missing_devices=True)
        self.silent: set[int] = set()
        self.behaviours: dict[int, Behaviour] = {}
        self.rng = random.Random(0)
        self.requests = 0  # counted by MisbehavingHandler, as on a SimModbusServer
        self.held = 0

    def callback_new_connection(self) -> Any:
        return _SilencingHandler(  # type: ignore[no-untyped-call]
            self, self.trace_packet, self.trace_pdu, self.trace_connect
        )


class _PacedHandler(MisbehavingHandler):
    """Plays the wire: each request waits for the line, then for its frames' time."""

    server: RtuTcpLineServer

    async def handle_request(self) -> None:
        pdu = self.last_pdu
        if not pdu:
            return
        line = self.server
        async with line.wire:
            answers = pdu.dev_id in line.units and pdu.dev_id not in line.silent
            chars = REQUEST_CHARS + (reply_chars(pdu.function_code, pdu.count) if answers
                                     else 0)
            await asyncio.sleep(chars * line.char_s + line.gap_s)
            if not answers:
                return
            self.last_pdu = pdu
            await super().handle_request()


class RtuTcpLineServer(SimModbusServer):
    """A serial device server: RTU frames over TCP, for the units of one line."""

    def __init__(self, devices: list[SimDevice], address: tuple[str, int], *, char_s: float,
                 gap_s: float, seed: int = 0) -> None:
        super().__init__(devices, address, seed=seed, framer=FramerType.RTU,
                         ignore_missing_devices=True)
        self.units = {d.id for d in devices}
        self.silent: set[int] = set()
        self.char_s = char_s
        self.gap_s = gap_s
        self.wire = asyncio.Lock()

    def callback_new_connection(self) -> Any:
        return _PacedHandler(  # type: ignore[no-untyped-call]
            self, self.trace_packet, self.trace_pdu, self.trace_connect
        )


class PtyWire:
    """Two pseudo-terminals joined at a baud rate: ``device_path`` for the units' side,
    ``client_path`` (or ``link``, a symlink to it) for the master's side."""

    def __init__(self, char_s: float, link: Path | None = None) -> None:
        self.char_s = char_s
        self.link = link
        self._fds: list[int] = []
        self._masters: tuple[int, int] = (-1, -1)
        self._free_at = [0.0, 0.0]
        self.device_path = ""
        self.client_path = ""

    def open(self) -> None:
        a_master, a_slave = os.openpty()
        b_master, b_slave = os.openpty()
        for fd in (a_slave, b_slave):
            tty.setraw(fd)
        self._fds = [a_master, a_slave, b_master, b_slave]  # slaves stay open: no EIO
        self._masters = (a_master, b_master)
        self.device_path, self.client_path = os.ttyname(a_slave), os.ttyname(b_slave)
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
            self.link.symlink_to(self.client_path)
        loop = asyncio.get_running_loop()
        for direction, fd in enumerate(self._masters):
            os.set_blocking(fd, False)
            loop.add_reader(fd, self._carry, direction)

    def _carry(self, direction: int) -> None:
        src, dst = self._masters[direction], self._masters[1 - direction]
        try:
            data = os.read(src, 4096)
        except OSError:
            return
        loop = asyncio.get_running_loop()
        at = max(loop.time(), self._free_at[direction]) + len(data) * self.char_s
        self._free_at[direction] = at
        loop.call_at(at, self._deliver, dst, data)

    def _deliver(self, fd: int, data: bytes) -> None:
        with contextlib.suppress(OSError):
            os.write(fd, data)

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for fd in self._masters:
            if fd >= 0:
                loop.remove_reader(fd)
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
        self._masters = (-1, -1)
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()


class RtuLineSim:
    """One line of a site with its units, over TCP (``server``) or a pty (``serial``:
    the client's end is linked at that path)."""

    def __init__(self, config: RtuLineConfig, devices: list[SimDevice], *, seed: int = 0
                 ) -> None:
        self.config = config
        self._devices = devices
        self._seed = seed
        self._tcp: RtuTcpLineServer | None = None
        self._serial: SerialLineServer | None = None
        self._wire: PtyWire | None = None
        self.silent: set[int] = set()

    @property
    def server(self) -> RtuTcpLineServer | SerialLineServer | None:
        return self._tcp or self._serial

    @property
    def client_path(self) -> str:
        """The serial path a client opens (pty lines)."""
        return self._wire.client_path if self._wire is not None else ""

    def all_silent(self) -> bool:
        return {d.id for d in self._devices} <= self.silent

    async def start(self) -> None:
        c = self.config
        if c.server is not None:
            host, port = split_host_port(c.server, 0)
            self._tcp = RtuTcpLineServer(self._devices, (host, port), char_s=c.char_s,
                                         gap_s=c.gap_s, seed=self._seed)
            self._tcp.silent = self.silent
            try:
                await self._tcp.serve_forever(background=True)
            except RuntimeError as exc:
                await self._tcp.shutdown()  # type: ignore[no-untyped-call]
                self._tcp = None
                raise ServerStartError(c.id, c.endpoint, str(exc)) from exc
        else:
            self._wire = PtyWire(c.char_s, Path(c.serial or ""))
            self._wire.open()
            self._serial = SerialLineServer(self._devices, c, self._wire.device_path)
            self._serial.silent = self.silent
            await self._serial.serve_forever(background=True)
        log.info("simulated RTU line %s on %s: units %s at %d baud", c.id, c.endpoint,
                 ", ".join(str(d.id) for d in self._devices), c.baudrate)

    async def close(self) -> None:
        for server in (self._tcp, self._serial):
            if server is not None:
                await server.shutdown()  # type: ignore[no-untyped-call]
        self._tcp = self._serial = None
        if self._wire is not None:
            self._wire.close()
            self._wire = None


class RtuUnitServer:
    """One unit of a simulated line: the simulators' per-device server."""

    def __init__(self, device: Device, line: RtuLineSim, lines_started: set[str],
                 initial: Mapping[str, PointValue], behaviour: Behaviour = WELL_BEHAVED
                 ) -> None:
        if not isinstance(device.profile, ModbusProfile) or not isinstance(
                device.config.address, ModbusRtuAddress):
            raise TypeError(f"device {device.id} is not a Modbus RTU unit")
        self.device_id = device.id
        self.profile: ModbusProfile = device.profile
        self.unit = device.config.address.unit
        self._line = line
        self._started = lines_started
        self._values = dict(initial)
        self._image = encode_image(self.profile, self._values)
        self._behaviour = behaviour

    @property
    def behaviour(self) -> Behaviour:
        return self._behaviour

    def set_behaviour(self, behaviour: Behaviour) -> None:
        self._behaviour = behaviour
        if self._line.server is not None:
            self._line.server.behaviours[self.unit] = behaviour

    async def start(self) -> None:
        if self._line.config.id not in self._started:
            await self._line.start()
            self._started.add(self._line.config.id)
        self._line.silent.discard(self.unit)
        if self._line.server is not None:
            self._line.server.behaviours[self.unit] = self._behaviour

    async def publish(self, values: Mapping[str, PointValue]) -> None:
        self._values.update(values)
        server = self._line.server
        if server is None:
            return
        image = encode_image(self.profile, self._values)
        for table, start, run in changed_runs(image, self._image):
            await server.async_setValues(self.unit, FUNCTION_CODE[table], start, list(run))
        self._image = image

    async def close(self) -> None:
        """Off the line: the unit goes silent (the line stays up for the others)."""
        self._line.silent.add(self.unit)
        if self._line.config.id in self._started and self._line.all_silent():
            await self._line.close()
            self._started.discard(self._line.config.id)


def sim_device(device: Device, values: Mapping[str, PointValue]) -> SimDevice:
    assert isinstance(device.profile, ModbusProfile)
    assert isinstance(device.config.address, ModbusRtuAddress)
    return build_sim_device(device.profile, device.config.address.unit, values)


class RtuLines:
    """The simulated lines of a site's RTU units, each started by its first unit."""

    def __init__(self, site: Site, devices: list[Device],
                 initial: Mapping[str, Mapping[str, PointValue]]) -> None:
        by_line: dict[tuple[str, str], list[SimDevice]] = {}
        for d in devices:
            a = d.config.address
            if isinstance(a, ModbusRtuAddress):
                by_line.setdefault((d.gateway, a.line), []).append(sim_device(d, initial[d.id]))
        self._lines = {key: RtuLineSim(site.gateway(key[0]).line(key[1]), units)
                       for key, units in by_line.items()}
        self._started: set[str] = set()

    def unit_server(self, device: Device, initial: Mapping[str, PointValue],
                    behaviour: Behaviour = WELL_BEHAVED) -> RtuUnitServer:
        assert isinstance(device.config.address, ModbusRtuAddress)
        line = self._lines[(device.gateway, device.config.address.line)]
        return RtuUnitServer(device, line, self._started, initial, behaviour)
