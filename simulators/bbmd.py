"""A BACnet/IP Broadcast Management Device for simulated building networks: a bacpypes3
application in BBMD mode that accepts foreign-device registrations and forwards broadcasts
between its subnet and its foreign devices (and the peers of its broadcast distribution
table). ``python -m simulators.bbmd ADDRESS/PREFIX [PEER ...]`` runs one until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys

from bacpypes3.app import Application
from bacpypes3.basetypes import BDTEntry, IPMode
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject

from facility.runner import run_service, setup_logging

log = logging.getLogger(__name__)
BBMD_INSTANCE = 4194300
VENDOR_ID = 999


def make_bbmd(address: str, peers: list[str], port: int = 47808) -> Application:
    """A BBMD bound to ``address`` (``a.b.c.d/prefix``) with itself and ``peers`` (other
    BBMDs' ``a.b.c.d/prefix``) in its broadcast distribution table."""
    device = DeviceObject(objectIdentifier=("device", BBMD_INSTANCE), objectName="bbmd",
                          vendorIdentifier=VENDOR_ID)
    network_port = NetworkPortObject(f"{address}:{port}", objectIdentifier=("network-port", 1),
                                     objectName="NetworkPort-1",
                                     networkNumberQuality="unknown")
    network_port.bacnetIPMode = IPMode.bbmd
    network_port.bbmdAcceptFDRegistrations = True
    network_port.bbmdForeignDeviceTable = []
    network_port.bbmdBroadcastDistributionTable = [
        BDTEntry(f"{a.split('/')[0]}:{port}") for a in (address, *peers)]
    return Application.from_object_list([device, network_port])


async def serve(address: str, peers: list[str]) -> None:
    app = make_bbmd(address, peers)
    log.info("BBMD on %s port 47808 (peers: %s)", address, ", ".join(peers) or "none")
    try:
        await asyncio.Event().wait()
    finally:
        app.close()


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: python -m simulators.bbmd ADDRESS/PREFIX [PEER/PREFIX ...]",
              file=sys.stderr)
        return 2
    setup_logging("bbmd")
    return run_service(serve(sys.argv[1], sys.argv[2:]))


if __name__ == "__main__":
    sys.exit(main())
