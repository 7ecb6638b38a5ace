"""A BACnet router for simulated building networks: a bacpypes3 application with one
BACnet/IP network port per BACnet network (its network number and its address with prefix
on that subnet), forwarding between them and answering Who-Is-Router-To-Network.
``python -m simulators.bacnet_router NET=ADDRESS/PREFIX NET=ADDRESS/PREFIX ...`` runs one
until SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys

from bacpypes3.app import Application
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject

from facility.runner import run_service, setup_logging

log = logging.getLogger(__name__)
ROUTER_INSTANCE = 4194299
VENDOR_ID = 999


def make_router(ports: dict[int, str], udp_port: int = 47808) -> Application:
    """A router joining BACnet networks: network number -> ``a.b.c.d/prefix`` there."""
    device = DeviceObject(objectIdentifier=("device", ROUTER_INSTANCE), objectName="router",
                          vendorIdentifier=VENDOR_ID)
    objects = [device]
    for i, (net, address) in enumerate(sorted(ports.items()), start=1):
        objects.append(NetworkPortObject(
            f"{address}:{udp_port}", objectIdentifier=("network-port", i),
            objectName=f"NetworkPort-{i}", networkNumber=net,
            networkNumberQuality="configured"))
    return Application.from_object_list(objects)


async def serve(ports: dict[int, str]) -> None:
    app = make_router(ports)
    log.info("BACnet router: %s", ", ".join(f"network {n} at {a}" for n, a in ports.items()))
    try:
        await asyncio.Event().wait()
    finally:
        app.close()


def main() -> int:
    try:
        ports = {int(n): a for n, _, a in (arg.partition("=") for arg in sys.argv[1:])}
    except ValueError:
        ports = {}
    if len(ports) < 2:
        print("usage: python -m simulators.bacnet_router NET=ADDRESS/PREFIX NET=ADDRESS/PREFIX",
              file=sys.stderr)
        return 2
    setup_logging("router")
    return run_service(serve(ports))


if __name__ == "__main__":
    sys.exit(main())
