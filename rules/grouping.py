"""Suppressed by design (ISA-18.2 "designed suppression"), as a pure lookup; no I/O.

A rule lists the parent rules that suppress it (``suppressed_by``: rule, scope, device
types). The scope says where the parent must be active: on the same device (a pump set's
low tank level under its own water outage), on any device of the same building (a lift's or
pump's stop under the building's power outage) or on the device's gateway (device offline
under gateway offline). ``parent_of`` answers, for a raise, which active parent it belongs
to; ``children_of`` answers, for a parent's raise, which alarms already active belong to it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Protocol

from rules.definitions import RuleDef, Suppression


class DeviceLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def gateway(self) -> str: ...
    @property
    def building(self) -> str: ...


class ActiveLookup(Protocol):
    def active(self, key: tuple[str, str]) -> bool: ...


class Grouping:
    def __init__(self, rules: Iterable[RuleDef], devices: Mapping[str, DeviceLike]) -> None:
        self._rules = {r.id: r for r in rules}
        self._devices = devices
        self._buildings: dict[str, list[str]] = defaultdict(list)
        self._gateways: dict[str, list[str]] = defaultdict(list)
        for d in devices.values():
            self._buildings[d.building].append(d.id)
            self._gateways[d.gateway].append(d.id)
        # parent rule id -> [(child rule, its suppression)]; parents that are not loaded
        # (disabled at the site) suppress nothing
        self._children: dict[str, list[tuple[RuleDef, Suppression]]] = defaultdict(list)
        for r in self._rules.values():
            for s in r.suppressed_by:
                if s.rule in self._rules:
                    self._children[s.rule].append((r, s))

    def is_parent(self, rule_id: str) -> bool:
        return rule_id in self._children

    def parent_of(
        self, source: str, rule_id: str, lookup: ActiveLookup
    ) -> tuple[str, str] | None:
        """The active parent alarm (source, alarm_type) that suppresses this raise, if any."""
        rule = self._rules[rule_id]
        dev = self._devices.get(source)
        if dev is None:
            return None
        for s in rule.suppressed_by:
            parent = self._rules.get(s.rule)
            if parent is None or (s.device_types and dev.type not in s.device_types):
                continue
            for p in self._scope(dev, s):
                if lookup.active((p, parent.id)):
                    return (p, parent.alarm_type)
        return None

    def children_of(
        self, source: str, rule_id: str, lookup: ActiveLookup
    ) -> tuple[tuple[str, str], ...] | None:
        """For a parent's raise: its children's active alarms (None: not a parent rule)."""
        if rule_id not in self._children:
            return None
        found: list[tuple[str, str]] = []
        for child, s in self._children[rule_id]:
            for c in self._members(source, s):
                dev = self._devices[c]
                if child.device_types and dev.type not in child.device_types:
                    continue
                if s.device_types and dev.type not in s.device_types:
                    continue
                if lookup.active((c, child.id)):
                    found.append((c, child.alarm_type))
        return tuple(found)

    def _scope(self, dev: DeviceLike, s: Suppression) -> list[str]:
        """Where the parent of a device's alarm may be active."""
        if s.scope == "device":
            return [dev.id]
        if s.scope == "building":
            return self._buildings[dev.building]
        return [dev.gateway]

    def _members(self, parent_source: str, s: Suppression) -> list[str]:
        """The devices whose alarms a parent active on ``parent_source`` groups."""
        if s.scope == "gateway":
            return self._gateways.get(parent_source, [])
        dev = self._devices.get(parent_source)
        if dev is None:
            return []
        return [dev.id] if s.scope == "device" else self._buildings[dev.building]
