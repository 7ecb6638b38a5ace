"""Modbus discovery for `facility gateway discover`: which unit ids answer on a Modbus TCP
host or on an RTU line, and which registers and bits each one serves.

A unit is present when it answers a read of holding register 0, normally or with an
exception (any but 0x0A/0x0B, which a Modbus TCP gateway sends for a unit behind it that
does not answer); silence is absence. A present unit's four tables are probed in blocks of
``PROBE_BLOCK`` from address 0 up to ``PROBE_LIMIT``, a refused block address by address;
every address it answers for becomes a point (``uint16`` or ``bool``, named by table and
address) for a person to retype. RTU lines are probed through ``gateway.rtu_line.RtuLine``,
so one request at a time with the line's gap and timeout: a silent unit id costs one
timeout, so scan a short ``units`` range on slow lines."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from facility.profiles import ModbusTable
from facility.site_network import RtuLineConfig
from gateway.errors import DeviceError
from gateway.rtu_line import METHODS, RtuLine

log = logging.getLogger(__name__)

PROBE_BLOCK = 10
PROBE_LIMIT = 200
GATEWAY_NO_UNIT = {10, 11}  # path unavailable, target device failed to respond
Read = Callable[[ModbusTable, int, int], Awaitable[ModbusPDU | None]]  # None: no answer


def point_of(table: ModbusTable, address: int) -> dict[str, Any]:
    kind = "bool" if table in (ModbusTable.COIL, ModbusTable.DISCRETE) else "uint16"
    return {"name": f"{table.value}_{address}", "table": table.value, "address": address,
            "type": kind}


async def _ok(read: Read, table: ModbusTable, address: int, count: int) -> bool:
    response = await read(table, address, count)
    return response is not None and not response.isError()


async def readable_points(read: Read) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = []
    for table in ModbusTable:
        for start in range(0, PROBE_LIMIT, PROBE_BLOCK):
            if await _ok(read, table, start, PROBE_BLOCK):
                points += [point_of(table, a) for a in range(start, start + PROBE_BLOCK)]
            else:
                points += [point_of(table, a) for a in range(start, start + PROBE_BLOCK)
                           if await _ok(read, table, a, 1)]
    return points


async def present(read: Read) -> bool:
    response = await read(ModbusTable.HOLDING, 0, 1)
    if response is None:
        return False
    return not (response.isError() and int(response.exception_code) in GATEWAY_NO_UNIT)


async def scan(read_of: Callable[[int], Read], units: Iterable[int], where: str
               ) -> dict[int, list[dict[str, Any]]]:
    """Readable points of every unit that answers."""
    found: dict[int, list[dict[str, Any]]] = {}
    for unit in units:
        read = read_of(unit)
        if not await present(read):
            log.debug("%s unit %d: no answer", where, unit)
            continue
        found[unit] = await readable_points(read)
        log.info("Modbus %s unit %d: %d readable points", where, unit, len(found[unit]))
    return found


async def scan_tcp(host: str, port: int, units: Iterable[int], timeout_s: float
                   ) -> dict[int, list[dict[str, Any]]]:
    client = AsyncModbusTcpClient(host, port=port, timeout=timeout_s * 2, retries=0)
    try:
        async with asyncio.timeout(timeout_s):
            connected = await client.connect()
    except TimeoutError:
        connected = False
    if not connected:
        client.close()
        log.warning("Modbus %s:%d: no connection", host, port)
        return {}

    def read_of(unit: int) -> Read:
        async def read(table: ModbusTable, address: int, count: int) -> ModbusPDU | None:
            try:
                async with asyncio.timeout(timeout_s):
                    response: ModbusPDU = await getattr(client, METHODS[table])(
                        address, count=count, device_id=unit)
                    return response
            except (TimeoutError, ModbusException):
                return None
        return read

    try:
        return await scan(read_of, units, f"{host}:{port}")
    finally:
        client.close()


async def scan_line(config: RtuLineConfig, units: Iterable[int]
                    ) -> dict[int, list[dict[str, Any]]]:
    line = RtuLine(config)

    def read_of(unit: int) -> Read:
        async def read(table: ModbusTable, address: int, count: int) -> ModbusPDU | None:
            try:
                return await line.request(f"unit-{unit}", unit, table, address, count)
            except DeviceError:
                return None
        return read

    try:
        return await scan(read_of, units, f"line {config.id} ({config.endpoint})")
    finally:
        await line.close()
