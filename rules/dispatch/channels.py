"""Notification messages and their wire formats; pure (no I/O, no clock).

A ``Notice`` is what happened to a work order and who is addressed. ``plan`` turns it into
one ``Outgoing`` per channel and recipient: the channels of the people addressed, the
roster's group channels and the ``notify.always`` ones, enabled only. Formats: a generic
webhook gets the notice as JSON; a WeCom group robot ``{"msgtype": "markdown", "markdown":
{"content": ...}}``; a DingTalk group robot ``{"msgtype": "markdown", "markdown": {"title",
"text"}, "at": {"atMobiles": [...]}}`` whose URL is signed (``timestamp`` and ``sign``
= base64 HMAC-SHA256 of "timestamp\\nsecret") when a secret is configured; e-mail gets a
subject and a plain-text body, one message per address. SMS and voice channels are never
planned by ``plan``: ``plan_loud`` addresses each person's mobile through the loud ladder of
the notice's priority (``loud``: SMS after ``sms_after``, a call after ``voice_after``), each
an ``Outgoing`` with its delay, whose payload is the template's values."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rules.dispatch.alerting import SMS_TYPES, VOICE_TYPES
from rules.dispatch.config import DispatchConfig, EmailChannel, Staff

EVENT_TEXT: dict[str, tuple[str, str]] = {
    "assigned": ("派单", "assigned"),
    "unassigned": ("无人值班 待派单", "nobody on call: waiting for a technician"),
    "escalated": ("超时未接单 升级", "not accepted in time: escalated"),
    "renotified": ("仍未接单 再次提醒", "still not accepted: reminder"),
    "sla_breached": ("超出时限", "SLA missed"),
    "pm_opened": ("计划保养工单", "preventive maintenance due"),
    "alarm_escalated": ("报警超时未确认 升级", "alarm not acknowledged in time: escalated"),
    "alarm_renotified": ("报警仍未确认 再次提醒", "alarm still not acknowledged: reminder"),
    "step_overdue": ("步骤超时 升级", "procedure step overdue: escalated"),
}
PHONE_TYPES = (*SMS_TYPES, *VOICE_TYPES)


@dataclass(frozen=True, slots=True)
class Notice:
    event: str
    site_id: str
    work_order_id: int | None
    title: str
    source: str
    priority: str
    state: str
    ts: datetime
    people: tuple[Staff, ...] = ()
    detail: str = ""  # one extra line: the escalation note, the SLA missed, the due date
    alarm_id: int | None = None

    def headline(self) -> str:
        zh, en = EVENT_TEXT.get(self.event, (self.event, self.event))
        return f"{zh} / {en}"

    def lines(self) -> list[str]:
        who = ", ".join(p.name or p.username for p in self.people) or "-"
        what = (f"工单 Work order #{self.work_order_id}" if self.work_order_id is not None
                else f"报警 Alarm #{self.alarm_id}")
        out = [f"{what}: {self.title}",
               f"设备 Source: {self.source}  优先级 Priority: {self.priority}  "
               f"状态 State: {self.state}",
               f"处理人 People: {who}"]
        if self.detail:
            out.append(self.detail)
        out.append(f"时间 Time: {self.ts.isoformat()}")
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "event": self.event, "site": self.site_id, "work_order_id": self.work_order_id,
            "alarm_id": self.alarm_id,
            "title": self.title, "source": self.source, "priority": self.priority,
            "state": self.state, "ts": self.ts.isoformat(), "detail": self.detail,
            "people": [{"username": p.username, "name": p.name, "mobile": p.mobile}
                       for p in self.people],
            "text": self.headline(),
        }


@dataclass(frozen=True, slots=True)
class Outgoing:
    channel: str
    channel_type: str
    recipient: str
    subject: str
    body: str
    payload: dict[str, Any]


def wecom_payload(notice: Notice) -> dict[str, Any]:
    colour = "warning" if notice.priority in ("critical", "high") else "info"
    content = "\n".join([f'**<font color="{colour}">{notice.headline()}</font>**',
                         *(f"> {line}" for line in notice.lines())])
    return {"msgtype": "markdown", "markdown": {"content": content}}


def dingtalk_payload(notice: Notice) -> dict[str, Any]:
    mobiles = [p.mobile for p in notice.people if p.mobile]
    text = "\n\n".join([f"#### {notice.headline()}", *notice.lines()])
    if mobiles:  # DingTalk only rings the people whose @mobile appears in the text
        text += "\n\n" + " ".join(f"@{m}" for m in mobiles)
    return {"msgtype": "markdown", "markdown": {"title": notice.headline(), "text": text},
            "at": {"atMobiles": mobiles, "isAtAll": False}}


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    """The robot URL with DingTalk's ``timestamp`` and ``sign`` query parameters."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(),
                      hashlib.sha256).digest()
    sign = urllib.parse.quote_plus(base64.b64encode(digest).decode())
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}timestamp={timestamp_ms}&sign={sign}"


_PAYLOADS = {"webhook": Notice.as_json, "wecom": wecom_payload, "dingtalk": dingtalk_payload}


def plan(config: DispatchConfig, notice: Notice, group_channels: tuple[str, ...] = ()
         ) -> list[Outgoing]:
    """The deliveries of a notice: one per channel, and per address for e-mail."""
    names: list[str] = []
    for name in (*(c for p in notice.people for c in p.channels), *group_channels,
                 *config.notify.always):
        if name not in names:
            names.append(name)
    subject = f"[{notice.priority}] {notice.headline()}: {notice.title}"
    body = "\n".join(notice.lines())
    who = ",".join(p.username for p in notice.people)
    out: list[Outgoing] = []
    for name in names:
        channel = config.channels.get(name)
        if channel is None or not channel.enabled or channel.type in PHONE_TYPES:
            continue
        if isinstance(channel, EmailChannel):
            addresses = dict.fromkeys([*(p.email for p in notice.people if p.email),
                                       *channel.to])
            out += [Outgoing(name, "email", a, subject, body, {}) for a in addresses]
        elif channel.type == "log":
            out.append(Outgoing(name, "log", who, subject, body, {}))
        else:
            out.append(Outgoing(name, channel.type, who, subject, body,
                                _PAYLOADS[channel.type](notice)))
    return out


def template_values(notice: Notice) -> dict[str, str]:
    """The values an SMS or voice template may use (``params`` of the channel)."""
    zh, _en = EVENT_TEXT.get(notice.event, (notice.event, notice.event))
    return {"headline": zh, "source": notice.source, "title": notice.title,
            "priority": notice.priority, "state": notice.state, "detail": notice.detail,
            "work_order": "" if notice.work_order_id is None else str(notice.work_order_id),
            "alarm": "" if notice.alarm_id is None else str(notice.alarm_id)}


def plan_loud(config: DispatchConfig, notice: Notice) -> list[tuple[Outgoing, float]]:
    """SMS and voice calls of a notice by its priority's rung: (outgoing, delay in s), one
    per person with a mobile number and enabled channel."""
    rung = config.loud.rung(notice.priority)
    subject = f"[{notice.priority}] {notice.headline()}: {notice.title}"
    values = template_values(notice)
    out: list[tuple[Outgoing, float]] = []
    for names, delay in ((config.loud.sms, rung.sms_after_s),
                         (config.loud.voice, rung.voice_after_s)):
        if delay is None:
            continue
        for name in names:
            channel = config.channels.get(name)
            if channel is None or not channel.enabled:
                continue
            out += [(Outgoing(name, channel.type, p.mobile, subject, notice.headline(),
                              dict(values)), delay)
                     for p in dict.fromkeys(notice.people) if p.mobile]
    return out
