"""Replayed (historical) telemetry, evaluated for the record; no I/O.

A gateway that was cut off from the broker replays its buffer with ``historical: true``.
Those values must not re-fire real-time alarms (the fault may be long over), but the duty
room should still see that it happened. ``History`` runs the same engine over the replayed
values in a state of its own, with the messages' own timestamps as the clock, and reports
each fault that both started and ended within the replay as a ``HistoricalAlarm``: recorded
as an alarm already closed (the service opens a follow-up work order for a critical one,
marked as found after the fact). A fault still going on at the end of the replay is the live
alarm's business (the gateway's first live message after reconnecting is a full snapshot
that raises it).

The gateway replays alarm- and state-class rows before bulk ones, so a device's replayed
messages may arrive out of time order; History evaluates a device's messages in time order
only: one older than the last it evaluated for that device is skipped (ingest still stores
it). Every change of an event point (bools, points tagged state, alarm, fault) is in a
critical row, so the faults the rules look for are seen in order.

A device's replayed messages are mostly partial (the points that changed), so its values
start from what the live service knows of it (``live``) when History first sees it, or
after ``RESEED_AFTER`` without a replayed message (a later outage)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from facility.messages import Telemetry, Value
from rules.current import CurrentValues
from rules.engine import Engine
from rules.engine_types import Action, ClearAlarm, EngineState, RaiseAlarm, RuleKey, TelemetryInput

RESEED_AFTER = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class HistoricalAlarm:
    raised: RaiseAlarm
    cleared_at: datetime


@dataclass(slots=True)
class History:
    """The replay's own engine state, values and open (not yet cleared) faults."""

    engine: Engine
    state: EngineState = field(default_factory=EngineState)
    values: CurrentValues = field(default_factory=CurrentValues)
    pending: dict[RuleKey, RaiseAlarm] = field(default_factory=dict)
    last_ts: dict[str, datetime] = field(default_factory=dict)

    def feed(self, device: str, msg: Telemetry,
             live: Mapping[str, Value] | None = None) -> list[HistoricalAlarm]:
        """Evaluate one replayed message at its own time; the faults it ends. A message
        older than the device's last one evaluated is skipped (out of order)."""
        last = self.last_ts.get(device)
        if last is not None and msg.ts < last:
            return []
        if live is not None and (last is None or msg.ts - last > RESEED_AFTER):
            self.values.seed(device, live)
        self.last_ts[device] = msg.ts
        actions = self._expire(msg.ts)
        values = self.values.update(device, msg)
        self.state, acts = self.engine.evaluate(
            self.state, TelemetryInput(device, values, bad=self.values.bad(device)), msg.ts)
        actions += acts
        out: list[HistoricalAlarm] = []
        for act in actions:
            if isinstance(act, RaiseAlarm):
                self.pending[(act.source, act.rule_id)] = act
            elif isinstance(act, ClearAlarm):
                raised = self.pending.pop((act.source, act.rule_id), None)
                if raised is not None:
                    out.append(HistoricalAlarm(raised, act.at))
        return out

    def _expire(self, until: datetime) -> list[Action]:
        """The on- and off-delays that ran out before ``until``, fired at the moment each ran
        out (the live service's tick; a replay has no clock but its messages' times): a
        device that reports nothing while stuck for its on-delay still raises."""
        delays = {r.id: r for r in self.engine.rules}
        due: set[datetime] = set()
        for (_source, rule_id), st in self.state.rules.items():
            rule = delays.get(rule_id)
            if rule is None or st.since is None or st.condition is None \
                    or st.condition == st.active:
                continue
            at = st.since + timedelta(seconds=rule.on_delay_s if st.condition
                                      else rule.off_delay_s)
            if at <= until:
                due.add(at)
        actions: list[Action] = []
        for at in sorted(due):
            self.state, acts = self.engine.tick(self.state, at)
            actions += acts
        return actions
