"""The rule engine: a pure function of (state, input, now) -> (new state, actions); no I/O and
no clock reads.

For each (source, rule) the state holds the last known condition, since when it has held,
whether the alarm is raised (latched), and the detail captured when the condition became
true. A condition true for ``on_delay_s`` raises once (``RaiseAlarm``); false for
``off_delay_s`` clears once (``ClearAlarm``); unknown (a missing or bad point) changes nothing.
``tick`` fires the delays that expire without a new message. Every change of a rule's state
comes with a ``SaveRuleState`` action (but the first ``False``, which equals no state), so
running timers survive a restart. A rule with a ``clear_condition`` has hysteresis: once its
condition is true, it stays true until the clear condition is. A telemetry input may name the
points that ``changed``: only the rules reading one of them are evaluated (the others would
give the same result). Suppressed by design: a raise whose rule is ``suppressed_by`` a parent
rule that is active in its scope carries ``suppressed_by`` (the parent's source and alarm
type); a parent's raise comes with ``GroupAlarms`` naming its children already active, and
``release_s`` after its clear (time for the consequences to clear too) ``UngroupAlarms``.
Historical (replayed) telemetry is evaluated by rules.history, not here: it changes no live
state and raises nothing.

A rule's ``immediate_condition`` (the entrapment's alarm button) raises at once while the
condition holds, without the on-delay. A rule with ``chatter`` remembers when its condition
last became true: the ``count``-th time within ``window_s`` raises one alarm flagged
chattering (ISA-18.2) even though no occurrence outlasted the on-delay; each further
occurrence updates that alarm (``UpdateAlarm`` with the count and the last time), and it
clears only once the condition stayed false for the window (or the off-delay, if longer)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from facility.messages import Value
from facility.site import Site
from rules.definitions import RuleDef
from rules.engine_types import (
    Action,
    ClearAlarm,
    DeviceInfo,
    DeviceStatusInput,
    EngineState,
    GatewayStatusInput,
    GroupAlarms,
    Input,
    RaiseAlarm,
    RuleKey,
    RuleState,
    SaveRuleState,
    UngroupAlarms,
    UpdateAlarm,
)
from rules.expression import Condition, ConditionError, Context
from rules.grouping import Grouping


@dataclass(frozen=True, slots=True)
class _Rule:
    defn: RuleDef
    condition: Condition
    clear: Condition | None
    immediate: Condition | None = None

    @property
    def _conditions(self) -> list[Condition]:
        return [c for c in (self.condition, self.clear, self.immediate) if c is not None]

    def applies_to(self, device_type: str) -> bool:
        return not self.defn.device_types or device_type in self.defn.device_types

    @property
    def names(self) -> frozenset[str]:
        """The point names the conditions name (a device lacking one is not evaluated)."""
        return frozenset(n for c in self._conditions for n in c.names)

    def reads(self, tags: Mapping[str, tuple[str, ...]]) -> frozenset[str]:
        """The point names the rule reads on a device with these point tags."""
        conds = self._conditions
        wanted = {t for c in conds for t in c.tags} | {
            t for t in (self.defn.detail_tag, self.defn.detail_bad_tag) if t}
        names = {n for c in conds for n in c.names}
        return frozenset(names | {p for p, t in tags.items() if wanted & set(t)})

    def holds(self, ctx: Context, was: bool | None) -> bool | None:
        """The condition with hysteresis: once true, true until the clear condition is."""
        if was and self.clear is not None:
            cleared = self.clear.evaluate(ctx)
            return None if cleared is None else not cleared
        return self.condition.evaluate(ctx)


class Engine:
    """Compiled rules and the site's devices; ``evaluate`` and ``tick`` are pure."""

    def __init__(self, rules: Iterable[RuleDef], devices: Mapping[str, DeviceInfo]) -> None:
        self._rules = {
            r.id: _Rule(r, Condition.compile(r.condition),
                        None if r.clear_condition is None else Condition.compile(r.clear_condition),
                        None if r.immediate_condition is None
                        else Condition.compile(r.immediate_condition))
            for r in rules
        }
        self._devices = dict(devices)
        # per device: its telemetry rules with the points each reads (changed-points filter)
        self._telemetry = {
            d.id: tuple((r, r.reads(d.tags)) for r in self._rules.values()
                        if r.defn.input == "telemetry" and r.applies_to(d.type)
                        and r.names <= d.tags.keys())
            for d in self._devices.values()
        }
        self._groups = Grouping([r.defn for r in self._rules.values()], self._devices)

    @classmethod
    def for_site(cls, rules: Iterable[RuleDef], site: Site) -> Engine:
        devices = {
            d.id: DeviceInfo(d.id, d.type, d.gateway, {p.name: p.tags for p in d.profile.points},
                             d.building)
            for d in site.devices.values()
        }
        return cls(rules, devices)

    @property
    def rules(self) -> tuple[RuleDef, ...]:
        return tuple(r.defn for r in self._rules.values())

    def evaluate(
        self, state: EngineState, inp: Input, now: datetime
    ) -> tuple[EngineState, list[Action]]:
        """Evaluate every rule the input concerns."""
        if isinstance(inp, GatewayStatusInput):
            ctx = Context({"offline": not inp.online, "online": inp.online}, {})
            return self._apply(state, inp.gateway, self._of_input("gateway_status", None), ctx,
                               now)
        dev = self._devices.get(inp.device)
        if dev is None:
            return state, []
        if isinstance(inp, DeviceStatusInput):
            ctx = Context({"offline": not inp.online, "online": inp.online}, {})
            return self._apply(state, dev.id, self._of_input("device_status", dev.type), ctx,
                               now)
        if inp.historical:
            return state, []  # replayed values: rules.history records them, never re-fires
        rules = self._telemetry[dev.id]
        if inp.changed is not None:
            changed = inp.changed
            rules = tuple(rr for rr in rules if not rr[1].isdisjoint(changed))
        return self._apply(state, dev.id, [r for r, _ in rules],
                           Context(inp.values, dev.tags, inp.bad), now)

    def _of_input(self, kind: str, device_type: str | None) -> list[_Rule]:
        return [r for r in self._rules.values() if r.defn.input == kind
                and (device_type is None or r.applies_to(device_type))]

    def tick(self, state: EngineState, now: datetime) -> tuple[EngineState, list[Action]]:
        """Fire the on- and off-delays that have run out since the last message."""
        updates: dict[RuleKey, RuleState] = {}
        actions: list[Action] = []
        for key, st in state.rules.items():
            rule = self._rules.get(key[1])
            if rule is not None and st.grouped and not st.active:
                new, acts = self._release(key, rule, st, now)
                if acts:
                    updates[key] = new
                    actions += acts
                continue
            if rule is None or st.condition is None or st.condition == st.active:
                continue
            new, acts = self._fire(key, rule, st, now, _Lookup(state, updates))
            if acts:
                updates[key] = new
                actions += acts
        return _merged(state, updates), actions

    def _apply(
        self, state: EngineState, source: str, rules: Iterable[_Rule], ctx: Context,
        now: datetime,
    ) -> tuple[EngineState, list[Action]]:
        updates: dict[RuleKey, RuleState] = {}
        actions: list[Action] = []
        for rule in rules:
            key = (source, rule.defn.id)
            st = state.get(key)
            try:
                cond = rule.holds(ctx, st.condition)
            except ConditionError:
                cond = None  # a value of the wrong type: as good as unknown
            if cond is None:
                continue
            changed = cond != st.condition
            first_false = st.condition is None and not cond and not st.active
            named: list[Action] = []
            if changed:
                detail = _detail(rule, ctx) if cond else st.detail
                st = replace(st, condition=cond, since=now, detail=detail)
                if cond and rule.defn.chatter is not None:
                    st, named = _rise(key, rule.defn, st, now)
            elif cond and (rule.defn.detail_tag or rule.defn.detail_bad_tag):
                st, named = self._named_points(key, rule, st, ctx, now)
            at_once = bool(cond) and _holds(rule.immediate, ctx)
            st, acts = self._fire(key, rule, st, now, _Lookup(state, updates), at_once=at_once)
            if acts:  # raised now, with the points as they are: no separate update
                acts = [*(a for a in named if not isinstance(a, SaveRuleState)), *acts]
            else:
                acts = named
            if changed and not acts and not first_false:
                acts = [SaveRuleState(source, rule.defn.id, st, now)]
            if acts or changed:
                updates[key] = st
                actions += acts
        return _merged(state, updates), actions

    def _named_points(
        self, key: RuleKey, rule: _Rule, st: RuleState, ctx: Context, now: datetime,
    ) -> tuple[RuleState, list[Action]]:
        """While the condition holds, follow the points its ``detail_tag`` (or
        ``detail_bad_tag``, with their flags) names: an alarm already raised is updated; one
        still in its on-delay will be raised with them."""
        detail = _detail(rule, ctx)
        if (detail.get("points") == st.detail.get("points")
                and detail.get("flags") == st.detail.get("flags")):
            return st, []
        st = replace(st, detail=detail)
        acts: list[Action] = [SaveRuleState(key[0], rule.defn.id, st, now)]
        if st.active:
            d = rule.defn
            device = None if d.input == "gateway_status" else key[0]
            acts.insert(0, UpdateAlarm(key[0], device, d.id, d.alarm_type, _message(d, detail),
                                       _english(d, detail), now))
        return st, acts

    def _fire(
        self, key: RuleKey, rule: _Rule, st: RuleState, now: datetime, lookup: _Lookup, *,
        at_once: bool = False,
    ) -> tuple[RuleState, list[Action]]:
        """Raise or clear when the condition has held for its delay (raise at once when
        ``at_once`` or chattering); else nothing."""
        if st.condition is None or st.since is None or st.condition == st.active:
            return st, []
        source, d = key[0], rule.defn
        held_s = (now - st.since).total_seconds()
        device = None if d.input == "gateway_status" else source
        chatter = d.chatter is not None and len(st.rises) >= d.chatter.count
        if st.condition and (held_s >= d.on_delay_s or at_once or chatter):
            st = replace(st, active=True, grouped=st.grouped or self._groups.is_parent(d.id))
            if chatter:
                st = replace(st, chattering=True, occurrences=len(st.rises),
                             detail={**st.detail, **_chatter_detail(d, st, now)})
            gateway = source if device is None else self._devices[source].gateway
            acts: list[Action] = [
                RaiseAlarm(source, device, gateway, d.id, d.alarm_type, d.priority, d.procedure,
                           _message(d, st.detail), _english(d, st.detail), now,
                           self._groups.parent_of(source, d.id, lookup)),
                SaveRuleState(source, d.id, st, now),
            ]
            children = self._groups.children_of(source, d.id, lookup)
            if children is not None:
                acts.append(GroupAlarms((source, d.alarm_type), children, st.since or now, now))
            return st, acts
        off_delay_s = d.off_delay_s
        if st.chattering and d.chatter is not None:
            off_delay_s = max(off_delay_s, d.chatter.window_s)
        if not st.condition and held_s >= off_delay_s:
            st = replace(st, active=False, chattering=False, occurrences=0, rises=())
            return st, [ClearAlarm(source, device, d.id, d.alarm_type, now),
                        SaveRuleState(source, d.id, st, now)]
        return st, []

    def _release(
        self, key: RuleKey, rule: _Rule, st: RuleState, now: datetime
    ) -> tuple[RuleState, list[Action]]:
        """A parent cleared ``release_s`` ago (after its off-delay): its children still active
        are consequences no longer, so they annunciate on their own."""
        d = rule.defn
        if st.since is None or st.condition is not False:
            return st, []
        if (now - st.since).total_seconds() < d.off_delay_s + d.release_s:
            return st, []
        st = replace(st, grouped=False)
        return st, [UngroupAlarms((key[0], d.alarm_type), now),
                    SaveRuleState(key[0], d.id, st, now)]


class _Lookup:
    """A rule's state as of now: this step's updates over the state it started from."""

    __slots__ = ("_state", "_updates")

    def __init__(self, state: EngineState, updates: Mapping[RuleKey, RuleState]) -> None:
        self._state, self._updates = state, updates

    def active(self, key: RuleKey) -> bool:
        st = self._updates.get(key)
        return (st if st is not None else self._state.get(key)).active


def _rise(key: RuleKey, d: RuleDef, st: RuleState, now: datetime
          ) -> tuple[RuleState, list[Action]]:
    """The condition became true again: remember when (within the chatter window); an alarm
    already up becomes (or stays) chattering and is updated with the count and the time."""
    assert d.chatter is not None
    window = d.chatter.window_s
    rises = (*(t for t in st.rises if (now - t).total_seconds() < window), now)
    st = replace(st, rises=rises)
    if not st.active or not (st.chattering or len(rises) >= d.chatter.count):
        return st, []
    occurrences = st.occurrences + 1 if st.chattering else len(rises)
    st = replace(st, chattering=True, occurrences=occurrences)
    st = replace(st, detail={**st.detail, **_chatter_detail(d, st, now)})
    device = None if d.input == "gateway_status" else key[0]
    return st, [UpdateAlarm(key[0], device, d.id, d.alarm_type, _message(d, st.detail),
                            _english(d, st.detail), now),
                SaveRuleState(key[0], d.id, st, now)]


def _chatter_detail(d: RuleDef, st: RuleState, now: datetime) -> dict[str, Any]:
    assert d.chatter is not None
    return {"chattering": True, "occurrences": max(st.occurrences, len(st.rises)),
            "window_s": d.chatter.window_s, "last_at": now.isoformat()}


def _holds(cond: Condition | None, ctx: Context) -> bool:
    if cond is None:
        return False
    try:
        return cond.evaluate(ctx) is True
    except ConditionError:
        return False


def _message(d: RuleDef, detail: Mapping[str, Any], *, english: bool = False) -> str:
    """The alarm's text: the rule's message, the points it names (with their flags) and,
    while it chatters, how often it came."""
    flags = detail.get("flags") or {}
    points = [f"{p}: {flags[p]}" if flags.get(p) else p for p in detail.get("points", [])]
    text = (d.message_en if english else d.message) + (f" ({', '.join(points)})" if points else "")
    if detail.get("chattering"):
        n = detail.get("occurrences", 0)
        text += f" [intermittent: {n} times]" if english else f" [间歇报警: {n} 次]"
    return text


def _english(d: RuleDef, detail: Mapping[str, Any]) -> dict[str, Any]:
    """The detail with the English text beside it ("" for a rule without an English
    message: the pages show the Chinese one)."""
    return {**detail, "message_en": _message(d, detail, english=True) if d.message_en else ""}


def _detail(rule: _Rule, ctx: Context) -> dict[str, Any]:
    """What the alarm says about the values that made the condition true."""
    detail: dict[str, Any] = {
        "values": {n: ctx.values[n] for n in sorted(rule.condition.names) if n in ctx.values}
    }
    tag = rule.defn.detail_tag
    if tag:
        detail["points"] = [p for p, tags in ctx.tags.items()
                            if tag in tags and _is_true(ctx.values.get(p))]
    tag = rule.defn.detail_bad_tag
    if tag:
        bad = [p for p, tags in ctx.tags.items() if tag in tags and p in ctx.bad]
        detail["points"] = bad
        detail["flags"] = {p: ctx.bad[p] for p in bad}
    return detail


def _is_true(v: Value | None) -> bool:
    return isinstance(v, bool | int | float) and bool(v)


def _merged(state: EngineState, updates: Mapping[RuleKey, RuleState]) -> EngineState:
    if not updates:
        return state
    return EngineState({**state.rules, **updates})
