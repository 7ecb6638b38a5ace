"""Notification outbox and delivery (psycopg async, httpx, smtplib in a thread).

``enqueue`` writes one ``notification_deliveries`` row per channel and recipient in the
caller's transaction (so a notification exists exactly when the decision to notify was
committed). ``Deliverer.deliver_due`` takes the pending rows whose time has come (``FOR
UPDATE SKIP LOCKED``: two rules processes never send one row twice), sends them
concurrently, and records every attempt in ``notification_attempts``; a failure is retried
with exponential backoff (``initial * 2**(n-1)``, capped at ``max``) until ``attempts`` tries,
then the row is ``failed``. A robot that answers HTTP 200 with a non-zero ``errcode``
(WeCom, DingTalk) has failed too, and so has an SMS or voice provider whose answer's code is
not OK. ``enqueue(..., cancel_when=...)`` also plans the notice's SMS and voice calls
(``channels.plan_loud``), each due after its rung's delay; a row whose ``cancel_when`` has
come true when it is due (the alarm acknowledged, the order accepted, the step done) is
``cancelled`` instead of sent: the voice call nobody needs."""

from __future__ import annotations

import asyncio
import logging
import smtplib
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Jsonb

from rules.dispatch import phone
from rules.dispatch.alerting import (
    AliyunSmsChannel,
    AliyunVoiceChannel,
    Keys,
    TencentSmsChannel,
)
from rules.dispatch.channels import Notice, Outgoing, dingtalk_signed_url, plan, plan_loud
from rules.dispatch.config import DispatchConfig, EmailChannel, Retry, WebhookChannel

log = logging.getLogger(__name__)


async def enqueue(conn: psycopg.AsyncConnection[Any], config: DispatchConfig, notice: Notice,
                  group_channels: tuple[str, ...] = (), *, cancel_when: str | None = None,
                  step_seq: int | None = None) -> int:
    """Plan and insert the deliveries of a notice; returns how many. With ``cancel_when``
    (alarm_acknowledged, order_accepted, step_done) the notice is loud: its SMS and voice
    calls are planned too, each dropped if the condition holds when it falls due."""
    rows = [(o, 0.0) for o in plan(config, notice, group_channels)]
    if cancel_when is not None:
        rows += plan_loud(config, notice)
    if rows:
        async with conn.cursor() as cur:
            await cur.executemany(
                "INSERT INTO notification_deliveries (site_id, created_at, work_order_id, event,"
                " channel, channel_type, recipient, subject, body, payload, next_attempt_at,"
                " alarm_id, step_seq, cancel_when)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [(notice.site_id, notice.ts, notice.work_order_id, notice.event, o.channel,
                  o.channel_type, o.recipient, o.subject, o.body, Jsonb(o.payload),
                  notice.ts + timedelta(seconds=delay), notice.alarm_id, step_seq,
                  cancel_when) for o, delay in rows],
            )
    return len(rows)


_CANCEL = """
UPDATE notification_deliveries d SET state = 'cancelled', last_error = 'no longer needed: '
    || replace(d.cancel_when, '_', ' ')
WHERE d.state = 'pending' AND d.site_id = %s AND d.next_attempt_at <= %s
  AND d.cancel_when IS NOT NULL AND (
    (d.cancel_when = 'alarm_acknowledged' AND EXISTS (SELECT 1 FROM alarms a
        WHERE a.id = d.alarm_id AND (a.acked_at IS NOT NULL OR a.state = 'normal')))
    OR (d.cancel_when = 'order_accepted' AND EXISTS (SELECT 1 FROM work_orders w
        WHERE w.id = d.work_order_id AND w.state NOT IN ('open', 'assigned')))
    OR (d.cancel_when = 'step_done' AND EXISTS (SELECT 1 FROM work_order_steps s
        WHERE s.work_order_id = d.work_order_id AND s.seq = d.step_seq
          AND s.done_at IS NOT NULL)))
"""


def backoff(retry: Retry, attempts: int) -> timedelta:
    """The pause after the ``attempts``-th failed try."""
    return timedelta(seconds=min(retry.max_s, retry.initial_s * 2 ** (attempts - 1)))


@dataclass(frozen=True, slots=True)
class Result:
    ok: bool
    status: int | None = None
    error: str = ""


class DeliveryFailed(Exception):
    def __init__(self, channel: str, reason: str, status: int | None = None) -> None:
        self.channel = channel
        self.reason = reason
        self.status = status
        super().__init__(f"channel {channel}: {reason}")


class Deliverer:
    """Sends due deliveries; one instance per service, with one HTTP client."""

    def __init__(self, config: DispatchConfig, client: httpx.AsyncClient,
                 keys: dict[str, Keys] | None = None) -> None:
        self.config = config
        self.client = client
        self.keys = keys or {}
        self.cancelled = 0
        self.sent = 0
        self.failed_attempts = 0

    async def deliver_due(self, conn: psycopg.AsyncConnection[Any], site_id: str,
                          now: datetime, limit: int = 50) -> int:
        """Send what is due now; returns the number of rows tried."""
        async with conn.transaction():
            dropped = await conn.execute(_CANCEL, (site_id, now))
            if dropped.rowcount > 0:
                self.cancelled += dropped.rowcount
                log.info("%d notifications no longer needed (acknowledged, accepted or done)",
                         dropped.rowcount)
            cur = await conn.execute(
                "SELECT id, channel, recipient, subject, body, payload, attempts"
                " FROM notification_deliveries WHERE state = 'pending' AND site_id = %s"
                " AND next_attempt_at <= %s ORDER BY next_attempt_at, id LIMIT %s"
                " FOR UPDATE SKIP LOCKED", (site_id, now, limit),
            )
            rows = await cur.fetchall()
            if not rows:
                return 0
            results = await asyncio.gather(*(self._send(r) for r in rows))
            for row, res in zip(rows, results, strict=True):
                await self._record(conn, row, res, now)
        return len(rows)

    async def _record(self, conn: psycopg.AsyncConnection[Any], row: tuple[Any, ...],
                      res: Result, now: datetime) -> None:
        delivery_id, channel, attempts = row[0], row[1], row[6] + 1
        await conn.execute(
            "INSERT INTO notification_attempts (delivery_id, attempt, time, ok, status, error)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (delivery_id, attempts, now, res.ok, res.status, res.error),
        )
        retry = self.config.notify.retry
        if res.ok:
            self.sent += 1
            state, next_at = "sent", now
        else:
            self.failed_attempts += 1
            give_up = attempts >= retry.attempts
            state, next_at = ("failed" if give_up else "pending"), now + backoff(retry, attempts)
            log.log(logging.WARNING if give_up else logging.INFO,
                    "notification %d via %s failed (try %d of %d): %s", delivery_id, channel,
                    attempts, retry.attempts, res.error)
        await conn.execute(
            "UPDATE notification_deliveries SET state = %s, attempts = %s, next_attempt_at = %s,"
            " last_error = %s, sent_at = CASE WHEN %s THEN %s END WHERE id = %s",
            (state, attempts, next_at, res.error, res.ok, now, delivery_id),
        )

    async def _send(self, row: tuple[Any, ...]) -> Result:
        _id, name, recipient, subject, body, payload, _attempts = row
        channel = self.config.channels.get(name)
        try:
            if channel is None:
                raise DeliveryFailed(name, "channel no longer configured")
            if isinstance(channel, WebhookChannel):
                return await self._post(name, channel, payload)
            if isinstance(channel, AliyunSmsChannel | AliyunVoiceChannel | TencentSmsChannel):
                status = await phone.send(self.client, name, channel, self.keys.get(name),
                                          recipient, payload, self.config.notify.retry.timeout_s)
                return Result(True, status)
            if isinstance(channel, EmailChannel):
                msg = _email(channel.sender, recipient, subject, body)
                status = await asyncio.to_thread(_smtp_send, channel, msg,
                                                 self.config.notify.retry.timeout_s)
                return Result(True, status)
            log.info("notification to %s: %s", recipient or "-", subject)
            return Result(True)
        except (DeliveryFailed, phone.PhoneRefused) as exc:
            return Result(False, exc.status, exc.reason)
        except (httpx.HTTPError, smtplib.SMTPException, OSError) as exc:
            code = getattr(exc, "smtp_code", None)
            return Result(False, code if isinstance(code, int) else None,
                          f"{type(exc).__name__}: {exc}"[:500])

    async def _post(self, name: str, channel: WebhookChannel, payload: dict[str, Any]
                    ) -> Result:
        url = str(channel.url)
        if channel.type == "dingtalk" and channel.secret is not None:
            url = dingtalk_signed_url(url, channel.secret.get_secret_value(),
                                      int(time.time() * 1000))
        resp = await self.client.post(url, json=payload,
                                      timeout=self.config.notify.retry.timeout_s)
        if resp.status_code >= 300:
            raise DeliveryFailed(name, f"HTTP {resp.status_code}: {resp.text[:200]}",
                                 resp.status_code)
        if channel.type in ("wecom", "dingtalk"):
            try:
                answer = resp.json()
            except ValueError:
                answer = {}
            code = answer.get("errcode", 0) if isinstance(answer, dict) else 0
            if code != 0:
                raise DeliveryFailed(name, f"errcode {code}: {answer.get('errmsg', '')}",
                                     resp.status_code)
        return Result(True, resp.status_code)


def _email(sender: str, to: str, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content(body)
    return msg


def _smtp_send(channel: EmailChannel, msg: EmailMessage, timeout_s: float) -> int:
    """Blocking: run in a thread. Returns the reply code of the accepted message."""
    with smtplib.SMTP(channel.host, channel.port, timeout=timeout_s) as smtp:
        if channel.starttls:
            smtp.starttls()
        if channel.username:
            password = channel.password.get_secret_value() if channel.password else ""
            smtp.login(channel.username, password)
        refused = smtp.send_message(msg)
        if refused:
            raise smtplib.SMTPRecipientsRefused(refused)
        code, _ = smtp.noop()
        return int(code)


__all__ = ["Deliverer", "Notice", "Outgoing", "backoff", "enqueue"]
