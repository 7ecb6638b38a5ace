"""The acknowledgement SLA engine (pure, time given), the loud ladder's and the procedures'
new settings validated at load."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pydantic
import pytest

from facility.procedures import Procedure
from rules.dispatch.ack_sla import AckClock, AckEscalate, AckRenotify, evaluate_ack
from rules.dispatch.alerting import Acknowledgement, AckPolicy, Loud, resolve_keys
from rules.dispatch.config import DispatchConfig, _check_loud

T0 = datetime(2025, 3, 5, 2, 0, tzinfo=UTC)
POLICY = AckPolicy.model_validate({"levels": [{"after": "0s", "notify": "next"},
                                              {"after": "5m", "notify": "supervisor"}],
                                   "renotify_every": "10m"})
CLOCK = AckClock(1, T0 + timedelta(minutes=1))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_nothing_before_the_acknowledge_time() -> None:
    d = evaluate_ack(CLOCK, POLICY, False, at(0.5))
    assert d.actions == () and d.due_at == at(1)


def test_next_person_at_the_acknowledge_time_then_the_supervisor() -> None:
    d = evaluate_ack(CLOCK, POLICY, False, at(1))
    assert d.actions == (AckEscalate(1, "next", at(1)),) and d.due_at == at(6)
    d = evaluate_ack(d.clock, POLICY, False, at(6))
    assert d.actions == (AckEscalate(2, "supervisor", at(6)),) and d.due_at == at(16)


def test_levels_passed_while_down_fire_together_and_reminders_coalesce() -> None:
    d = evaluate_ack(CLOCK, POLICY, False, at(40))
    assert [type(a) for a in d.actions] == [AckEscalate, AckEscalate, AckRenotify]
    assert d.actions[2] == AckRenotify(3, at(36)) and d.due_at == at(46)


def test_an_acknowledged_alarm_has_nothing_left() -> None:
    d = evaluate_ack(CLOCK, POLICY, True, at(40))
    assert d.actions == () and d.due_at is None


def test_defaults_and_priorities_left_out_keep_theirs() -> None:
    ack = Acknowledgement.model_validate({"acknowledge": {"critical": "30s"}})
    assert ack.for_priority("critical") == 30 and ack.for_priority("high") == 300
    loud = Loud.model_validate({"by_priority": {"high": {"sms_after": "1m"}}})
    assert loud.rung("high").sms_after_s == 60 and loud.rung("critical").voice_after_s == 300


def test_levels_out_of_order_and_negative_delays_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError, match="in order"):
        AckPolicy.model_validate({"levels": [{"after": "5m", "notify": "a"},
                                             {"after": "1m", "notify": "b"}]})
    with pytest.raises(pydantic.ValidationError):
        Loud.model_validate({"by_priority": {"critical": {"voice_after": "-1s"}}})


def test_the_ladder_names_channels_of_the_right_kind_and_keys_come_from_the_environment(
) -> None:
    cfg = DispatchConfig.model_validate({
        "site": "x", "channels": {
            "sms": {"type": "aliyun_sms", "sign_name": "s", "template_code": "SMS_1"},
            "log": {"type": "log"}},
        "loud": {"sms": ["log"], "voice": ["sms", "nope"]}, "notify": {"always": ["sms"]},
        "acknowledgement": {"roster": "duty_room"}})
    problems = _check_loud(cfg)
    assert "loud.sms: channel log is a log channel, not one of aliyun_sms, tencent_sms" in problems
    assert "loud.voice: channel sms is a aliyun_sms channel, not one of aliyun_voice" in problems
    assert "loud.voice: no channel nope" in problems
    assert "acknowledgement.roster: no roster duty_room" in problems
    assert any(p.startswith("notify.always: SMS and voice channels") for p in problems)
    keys, missing = resolve_keys(cfg.channels, {"FACILITY_ALIYUN_ACCESS_KEY_ID": "id"})
    assert keys == {} and missing == [
        "channels.sms: environment variable FACILITY_ALIYUN_ACCESS_KEY_SECRET is not set"]
    keys, missing = resolve_keys(cfg.channels, {"FACILITY_ALIYUN_ACCESS_KEY_ID": "id",
                                                "FACILITY_ALIYUN_ACCESS_KEY_SECRET": "s3cr3t"})
    assert not missing and "s3cr3t" not in repr(keys["sms"])


def test_a_step_clock_without_a_time_limit_is_refused() -> None:
    body = {"id": "p", "title": "t", "title_en": "t", "trade": "general", "priority": "low",
            "sla": {"acknowledge": "1m", "accept": "1m", "arrive": "1m", "resolve": "1m"},
            "steps": [{"role": "guard", "action": "a", "action_en": "a", "clock": "raised"}]}
    with pytest.raises(pydantic.ValidationError, match="clock without a time_limit"):
        Procedure.model_validate(body)
    body["steps"] = [{"role": "guard", "action": "a", "action_en": "a", "time_limit": "5m"}]
    body["step_clock"] = "raised"
    proc = Procedure.model_validate(body)
    assert proc.clock_of(proc.steps[0]) == "raised"
    with pytest.raises(pydantic.ValidationError):
        Procedure.model_validate({**body, "step_clock": "assigned"})
