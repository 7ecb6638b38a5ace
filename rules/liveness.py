"""A gateway's liveness from its heartbeats, not only from its Will; no I/O, no clock.

A gateway republishes its ``online`` status every ``heartbeat_s`` (site file, per gateway;
the MQTT contract allows the repeat: same topic, same session). On a single mosquitto its
Will says at once when it dies; on a clustered broker the Will lives in the node the gateway
was connected to and dies with it, and a retained status is per node. So the rules also
judge a gateway offline after ``offline_after_heartbeats`` periods without a live message
from it (any message of its subtree but a retained one or an offline status counts).

Silence is only evidence while the rules are listening: the clock of every gateway starts
again when the subscriber (re)subscribes (``listening``), and nothing is judged while
deliveries wait unhandled (``caught_up=False``: a backlog is not silence). A gateway
judged silent is said once; the next message from it (its heartbeat says ``online``)
ends the silence, and the engine's own gateway-status input clears the alarm."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Heartbeat:
    period_s: float
    misses: int

    @property
    def window_s(self) -> float:
        return self.period_s * self.misses


class Liveness:
    def __init__(self, heartbeats: Mapping[str, Heartbeat], now: float) -> None:
        self.heartbeats = dict(heartbeats)
        self._heard = dict.fromkeys(self.heartbeats, now)
        self._silent: set[str] = set()

    @property
    def silent_gateways(self) -> frozenset[str]:
        return frozenset(self._silent)

    def heard(self, gateway: str, now: float) -> None:
        """A live message from ``gateway`` (ignored for a gateway not watched here)."""
        if gateway in self._heard:
            self._heard[gateway] = max(self._heard[gateway], now)
            self._silent.discard(gateway)

    def listening(self, now: float) -> None:
        """The subscription is (again) in place: every gateway gets a full window."""
        for gateway in self._heard:
            self._heard[gateway] = max(self._heard[gateway], now)

    def newly_silent(self, now: float, *, caught_up: bool = True) -> list[str]:
        """Gateways silent past their window and not said yet (then marked said)."""
        if not caught_up:
            return []
        found = sorted(g for g, at in self._heard.items()
                       if g not in self._silent and now - at > self.heartbeats[g].window_s)
        self._silent.update(found)
        return found
