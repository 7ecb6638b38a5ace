"""The dispatch file (e.g. sites/demo-dispatch.yaml) as validated models: staff, on-call
rosters per trade or escalation role, notification channels, the escalation policy and the
preventive-maintenance schedules. ``load_dispatch`` reads it with ``yaml.safe_load``, checks
the cross references (people on shifts are staff, channels exist, every trade of the
procedures has a roster, schedules name known checklists and select devices of the site) and
refuses a mistake with the file and the path of the entry (``facility.config_errors``)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pydantic
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator

from facility.config_errors import ConfigError, load_model
from facility.durations import parse_duration
from facility.procedures import Procedure
from facility.site import Site
from rules.dispatch.alerting import (
    SMS_TYPES,
    VOICE_TYPES,
    Acknowledgement,
    AliyunSmsChannel,
    AliyunVoiceChannel,
    Keys,
    Loud,
    TencentSmsChannel,
    resolve_keys,
)
from rules.dispatch.checklists import Checklist, load_checklists

NAME = r"^[a-z0-9][a-z0-9_.-]*$"

Seconds = Annotated[float, BeforeValidator(parse_duration)]
DAYS = {"mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6, "sun": 7}
_EVERY = re.compile(r"^(\d+)(d|w|mo|y)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Staff(_Strict):
    username: str = Field(pattern=NAME)
    name: str = ""
    mobile: str = Field(default="", pattern=r"^\+?[0-9]*$")
    email: str = Field(default="", pattern=r"^$|^[^@\s]+@[^@\s]+$")
    channels: tuple[str, ...] = ()


def _days(v: object) -> object:
    if v == "all":
        return tuple(range(1, 8))
    if isinstance(v, list | tuple):
        return tuple(DAYS.get(d, d) if isinstance(d, str) else d for d in v)
    return v


class Shift(_Strict):
    name: str = Field(min_length=1)
    days: Annotated[tuple[Annotated[int, Field(ge=1, le=7)], ...],
                    BeforeValidator(_days)] = tuple(range(1, 8))
    start: time
    end: time
    on_call: tuple[str, ...] = Field(min_length=1)

    @property
    def overnight(self) -> bool:
        return self.end <= self.start


class Swap(_Strict):
    """A shift swap: from ``starts_at`` to ``ends_at`` the substitute takes the original's
    place in the roster's shifts (kept in table roster_swaps, edited through the API)."""

    roster: str
    original: str
    substitute: str
    starts_at: datetime
    ends_at: datetime


class Roster(_Strict):
    shifts: tuple[Shift, ...] = ()
    backup: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()


class Retry(_Strict):
    attempts: int = Field(default=5, ge=1, le=20)
    initial_s: Seconds = Field(default=2.0, alias="initial", gt=0)
    max_s: Seconds = Field(default=300.0, alias="max", gt=0)
    timeout_s: Seconds = Field(default=10.0, alias="timeout", gt=0)


class WebhookChannel(_Strict):
    type: Literal["webhook", "wecom", "dingtalk"]
    url: pydantic.AnyHttpUrl
    secret: SecretStr | None = Field(default=None, description="DingTalk signing secret")
    enabled: bool = True


class EmailChannel(_Strict):
    type: Literal["email"]
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = Field(alias="from", pattern=r"^[^@\s]+@[^@\s]+$")
    to: tuple[str, ...] = Field(default=(), description="always told, besides the people")
    starttls: bool = False
    username: str = ""
    password: SecretStr | None = None
    enabled: bool = True


class LogChannel(_Strict):
    """Writes the notification to the service log: for the demo and development."""

    type: Literal["log"]
    enabled: bool = True


Channel = Annotated[WebhookChannel | EmailChannel | LogChannel | AliyunSmsChannel
                    | AliyunVoiceChannel | TencentSmsChannel, Field(discriminator="type")]


class Escalation(_Strict):
    default_role: str = Field(default="engineering_supervisor", pattern=NAME,
                              description="chain of a procedure that has none")
    renotify_every_s: Seconds | None = Field(default=None, alias="renotify_every", gt=0,
                                             description="default: the accept SLA")
    supervisor_role: str = Field(default="engineering_supervisor", pattern=NAME,
                                 description="told when arrive or resolve SLAs are missed")


class Notify(_Strict):
    always: tuple[str, ...] = Field(default=(), description="channels told of every event")
    retry: Retry = Retry()


class DeviceSelect(_Strict):
    type: str | None = None
    devices: tuple[str, ...] = ()
    buildings: tuple[str, ...] = ()


class RunHours(_Strict):
    points: tuple[str, ...] = Field(min_length=1)
    every_h: float = Field(alias="every", gt=0)


class Schedule(_Strict):
    id: str = Field(pattern=NAME)
    checklist: str
    select: DeviceSelect = Field(alias="devices")
    every: str | None = Field(default=None, description="calendar period: 15d, 1w, 3mo, 1y")
    start: date | None = None
    lead_s: Seconds = Field(default=0.0, alias="lead", ge=0)
    run_hours: RunHours | None = None
    due_within_s: Seconds = Field(default=7 * 86400.0, alias="due_within", gt=0)

    @field_validator("every")
    @classmethod
    def _every(cls, v: str | None) -> str | None:
        if v is not None and not _EVERY.match(v):
            raise ValueError(f"{v!r} is not a period like 1d, 15d, 1w, 1mo, 3mo, 6mo, 1y")
        return v

    def period(self) -> tuple[int, str]:
        """(15, 'd'), (3, 'mo'), ...; only for calendar schedules."""
        m = _EVERY.match(self.every or "")
        assert m is not None
        return int(m.group(1)), m.group(2)


class Maintenance(_Strict):
    checklists_dir: Path = Path("../maintenance")
    check_every_s: Seconds = Field(default=60.0, alias="check_every", gt=0)
    schedules: tuple[Schedule, ...] = ()


class DispatchConfig(_Strict):
    site: str
    timezone: str = "Asia/Shanghai"
    staff: tuple[Staff, ...] = ()
    rosters: dict[str, Roster] = {}
    swaps: tuple[Swap, ...] = ()
    channels: dict[str, Channel] = {}
    escalation: Escalation = Escalation()
    notify: Notify = Notify()
    loud: Loud = Loud()
    acknowledgement: Acknowledgement = Acknowledgement()
    maintenance: Maintenance = Maintenance()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r}") from None
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def person(self, username: str) -> Staff | None:
        return next((s for s in self.staff if s.username == username), None)


class Dispatch:
    """The loaded dispatch file with its checklists."""

    def __init__(self, config: DispatchConfig, checklists: dict[str, Checklist],
                 path: Path, keys: dict[str, Keys] | None = None) -> None:
        self.config = config
        self.checklists = checklists
        self.path = path
        self.keys = keys or {}  # provider keys per channel, from the environment


def load_dispatch(path: Path | str, site: Site, procedures: dict[str, Procedure],
                  environ: Mapping[str, str] | None = None) -> Dispatch:
    """Read and validate a dispatch file; ConfigError naming the file and entry. Provider
    keys are read from ``environ`` (default: the process environment)."""
    path = Path(path)
    config = load_model(path, DispatchConfig)
    checklists_dir = (path.parent / config.maintenance.checklists_dir).resolve()
    checklists = load_checklists(checklists_dir) if config.maintenance.schedules else {}
    problems = _cross_check(config, site, procedures, checklists)
    keys, missing = resolve_keys(config.channels, os.environ if environ is None else environ)
    if problems or missing:
        raise ConfigError(path, problems + missing)
    return Dispatch(config, checklists, path, keys)


def _cross_check(config: DispatchConfig, site: Site, procedures: dict[str, Procedure],
                 checklists: dict[str, Checklist]) -> list[str]:
    problems: list[str] = []
    staff = {s.username for s in config.staff}
    if len(staff) != len(config.staff):
        problems.append("staff: a username is listed twice")
    if config.site != site.id:
        problems.append(f"site: {config.site} is not the site {site.id}")
    for i, s in enumerate(config.staff):
        problems += [f"staff[{i}].channels: no channel {c}"
                     for c in s.channels if c not in config.channels]
    for name, roster in config.rosters.items():
        for j, shift in enumerate(roster.shifts):
            problems += [f"rosters.{name}.shifts[{j}].on_call: {u} is not in staff"
                         for u in shift.on_call if u not in staff]
        problems += [f"rosters.{name}.backup: {u} is not in staff"
                     for u in roster.backup if u not in staff]
        problems += [f"rosters.{name}.channels: no channel {c}"
                     for c in roster.channels if c not in config.channels]
    problems += [f"notify.always: no channel {c}" for c in config.notify.always
                 if c not in config.channels]
    problems += _check_loud(config)
    trades = sorted({p.trade for p in procedures.values()} | {c.trade for c in checklists.values()})
    problems += [f"rosters: no roster for trade {t}" for t in trades if t not in config.rosters]
    for i, sch in enumerate(config.maintenance.schedules):
        problems += _check_schedule(f"maintenance.schedules[{i}]", sch, site, checklists)
    ids = [s.id for s in config.maintenance.schedules]
    if len(set(ids)) != len(ids):
        problems.append("maintenance.schedules: an id is used twice")
    return problems


def _check_loud(config: DispatchConfig) -> list[str]:
    """The loud ladder names SMS and voice channels of the right type; an explicitly named
    acknowledgement roster exists."""
    problems: list[str] = []
    for kind, names, types in (("sms", config.loud.sms, SMS_TYPES),
                               ("voice", config.loud.voice, VOICE_TYPES)):
        for c in names:
            channel = config.channels.get(c)
            if channel is None:
                problems.append(f"loud.{kind}: no channel {c}")
            elif channel.type not in types:
                problems.append(f"loud.{kind}: channel {c} is a {channel.type} channel,"
                                f" not one of {', '.join(types)}")
    phone = {n for n, c in config.channels.items() if c.type in (*SMS_TYPES, *VOICE_TYPES)}
    listed = [*(f"staff[{i}].channels" for i, s in enumerate(config.staff)
                if phone & set(s.channels)),
              *(f"rosters.{n}.channels" for n, r in config.rosters.items()
                if phone & set(r.channels)),
              *(["notify.always"] if phone & set(config.notify.always) else [])]
    problems += [f"{where}: SMS and voice channels are used through loud.sms and loud.voice"
                 " (people are reached at their mobile), not listed here" for where in listed]
    ack = config.acknowledgement
    if "roster" in ack.model_fields_set and ack.roster not in config.rosters:
        problems.append(f"acknowledgement.roster: no roster {ack.roster}")
    for policy in ("with_order", "without_order"):
        for i, level in enumerate(getattr(ack, policy).levels):
            if level.notify not in ("next", "supervisor") and level.notify not in config.rosters:
                problems.append(f"acknowledgement.{policy}.levels[{i}].notify: no roster"
                                f" {level.notify} (or next, supervisor)")
    return problems


def _check_schedule(where: str, sch: Schedule, site: Site,
                    checklists: dict[str, Checklist]) -> list[str]:
    problems: list[str] = []
    if sch.checklist not in checklists:
        problems.append(f"{where}.checklist: no checklist {sch.checklist}")
    if (sch.every is None) == (sch.run_hours is None):
        problems.append(f"{where}: give either every (calendar) or run_hours")
    if sch.every is not None and sch.start is None:
        problems.append(f"{where}.start: a calendar schedule needs a start date")
    devices = select_devices(sch.select, site)
    if not devices:
        problems.append(f"{where}.devices: selects no device of the site")
    problems += [f"{where}.devices.devices: no device {d}" for d in sch.select.devices
                 if d not in site.devices]
    if sch.run_hours is not None:
        for dev in devices:
            names = {p.name for p in site.devices[dev].profile.points}
            problems += [f"{where}.run_hours.points: {dev} has no point {p}"
                         for p in sch.run_hours.points if p not in names]
    return problems


def select_devices(sel: DeviceSelect, site: Site) -> list[str]:
    """Device ids matching a selection (all criteria given must hold), in site order."""
    out = []
    for dev_id, dev in site.devices.items():
        if sel.type is not None and dev.type != sel.type:
            continue
        if sel.devices and dev_id not in sel.devices:
            continue
        if sel.buildings and dev.building not in sel.buildings:
            continue
        out.append(dev_id)
    return out


def default_path(site: Site) -> Path:
    """sites/demo.yaml -> sites/demo-dispatch.yaml."""
    return site.path.with_name(f"{site.path.stem}-dispatch.yaml")
