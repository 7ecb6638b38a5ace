"""The command line of `facility gateway discover` turned into ``Targets``: the gateway's
BACnet settings and RTU lines from ``--site``/``--gateway``, overridden by ``--address``,
``--interface`` and ``--bbmd``; resolved on this host like the gateway does at start."""

from __future__ import annotations

import argparse
from pathlib import Path

import pydantic

from facility.config_errors import ConfigError, from_validation
from facility.site import GatewayConfig, load_site
from facility.site_network import BacnetNetwork, ForeignDevice
from gateway.bacnet_net import resolve_bind
from gateway.discover import Targets, unit_range


def discover_targets(args: argparse.Namespace) -> Targets:
    gateway: GatewayConfig | None = None
    where, source = "command line", Path("(command line)")
    if args.discover_site is not None:
        if args.discover_gateway is None:
            raise ConfigError(args.discover_site, ["--gateway ID is needed with --site"])
        site = load_site(args.discover_site)
        try:
            gateway = site.gateway(args.discover_gateway)
        except KeyError:
            raise ConfigError(args.discover_site,
                              [f"no gateway {args.discover_gateway}"]) from None
        index = [g.id for g in site.config.gateways].index(gateway.id)
        where, source = f"gateways[{index}].bacnet", args.discover_site
    net = gateway.bacnet if gateway is not None else None
    if args.bind_address or args.interface or args.bbmd:
        base = net or BacnetNetwork()
        try:
            net = BacnetNetwork(
                interface=args.interface or (None if args.bind_address else base.interface),
                address=args.bind_address or (None if args.interface else base.address),
                port=base.port, foreign_device=ForeignDevice(bbmd=args.bbmd) if args.bbmd
                else base.foreign_device)
        except pydantic.ValidationError as exc:
            raise from_validation(source, exc) from exc
    return Targets(who_is=args.who_is, units=unit_range(args.units) if args.units else None,
                   gateway=gateway, bind=resolve_bind(net, source, where))
