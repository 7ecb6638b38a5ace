"""Which part of a site one rules process evaluates; no I/O.

Rule state is per device and grouping looks at the device, its building and its gateway; a
building's devices all sit behind the building's gateway. So a site splits into partitions
by gateway without any rule seeing less than it needs: each rules process takes a set of
gateways (``facility rules --gateways gw-a,gw-b``; default: all of them), subscribes to
their topics only, loads and keeps the rule state of their devices, and re-opens the work
orders only of its own alarms. Its persistent MQTT session is named after the partition, so
partitions never take each other's messages."""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass

from facility import topics
from facility.config_errors import ConfigError
from facility.site import Site
from facility.topics import TopicKind

_KINDS = (TopicKind.TELEMETRY, TopicKind.DEVICE_STATUS, TopicKind.GATEWAY_STATUS)
_MAX_ID_PART = 40  # longer gateway lists are named by a hash in the client id


@dataclass(frozen=True, slots=True)
class Partition:
    site: str
    gateways: tuple[str, ...]  # sorted
    whole_site: bool
    devices: tuple[str, ...]

    @property
    def sources(self) -> list[str]:
        """The alarm sources this partition owns: its devices and its gateways."""
        return [*self.devices, *self.gateways]

    def subscriptions(self) -> list[str]:
        if self.whole_site:
            return [topics.subscription(k, self.site) for k in _KINDS]
        return [topics.subscription(k, self.site, gateway=g) for g in self.gateways
                for k in _KINDS]

    def client_id(self) -> str:
        """``rules-{site}`` for the whole site, ``rules-{site}-{gw+gw...}`` for a part."""
        if self.whole_site:
            return f"rules-{self.site}"
        part = "+".join(self.gateways)
        if len(part) > _MAX_ID_PART:
            part = "p" + hashlib.sha256(part.encode()).hexdigest()[:12]
        return f"rules-{self.site}-{part}"

    def describe(self) -> str:
        if self.whole_site:
            return f"all {len(self.gateways)} gateways"
        return f"gateways {', '.join(self.gateways)} ({len(self.devices)} devices)"


def partition_of(site: Site, gateways: Collection[str] | None = None) -> Partition:
    """The partition of ``site`` for the named gateways (None or empty: the whole site);
    ConfigError for a gateway the site does not define."""
    known = sorted(g.id for g in site.config.gateways)
    chosen = sorted(set(gateways)) if gateways else known
    unknown = [g for g in chosen if g not in known]
    if unknown:
        raise ConfigError(site.path, [
            f"--gateways: no gateway {', '.join(unknown)} at site {site.id} "
            f"(defined: {', '.join(known)})"])
    devices = tuple(sorted(d.id for d in site.devices.values() if d.gateway in chosen))
    return Partition(site.id, tuple(chosen), chosen == known, devices)
