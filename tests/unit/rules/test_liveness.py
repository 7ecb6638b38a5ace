"""Gateway liveness from heartbeats, no I/O: silent past N periods is said once, a live
message ends the silence, a new subscription restarts every clock, a backlog is no
evidence, and each gateway has its own window."""

from __future__ import annotations

from rules.liveness import Heartbeat, Liveness

BEAT = Heartbeat(period_s=10, misses=3)


def test_a_gateway_silent_past_its_window_is_said_once() -> None:
    live = Liveness({"gw-a": BEAT, "gw-b": BEAT}, now=0)
    live.heard("gw-b", 25)
    assert live.newly_silent(30) == []  # 30 s is the window, not past it
    assert live.newly_silent(30.1) == ["gw-a"]
    assert live.newly_silent(40) == []  # said already
    assert live.newly_silent(55.1) == ["gw-b"]
    assert live.silent_gateways == {"gw-a", "gw-b"}


def test_a_live_message_ends_the_silence_and_restarts_the_clock() -> None:
    live = Liveness({"gw-a": BEAT}, now=0)
    assert live.newly_silent(31) == ["gw-a"]
    live.heard("gw-a", 32)
    assert live.silent_gateways == frozenset()
    assert live.newly_silent(62) == []
    assert live.newly_silent(62.5) == ["gw-a"]  # silent again: said again


def test_nothing_is_judged_while_a_backlog_waits_or_before_resubscribing() -> None:
    live = Liveness({"gw-a": BEAT}, now=0)
    assert live.newly_silent(100, caught_up=False) == []
    live.listening(100)  # the subscriber was away: its silence was ours
    assert live.newly_silent(120) == []
    assert live.newly_silent(131) == ["gw-a"]


def test_windows_are_per_gateway_and_strangers_are_ignored() -> None:
    live = Liveness({"fast": Heartbeat(1, 2), "slow": BEAT}, now=0)
    live.heard("elsewhere", 1)  # not watched by this partition
    assert live.newly_silent(2.5) == ["fast"]
    assert live.heartbeats["slow"].window_s == 30
