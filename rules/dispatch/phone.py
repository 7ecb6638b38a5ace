"""Sending one SMS or voice call through its provider (httpx): builds the signed request at
the moment of sending (a fresh timestamp and nonce for every attempt, since providers refuse
stale ones), sends it and reads the provider's answer. An HTTP error status or an answer whose
code is not OK is a ``PhoneRefused`` (the delivery is retried like any other channel). The
keys travel as ``SecretStr`` until the request is signed and are never logged; the error
text names the provider's code, never the request."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from rules.dispatch.alerting import (
    AliyunSmsChannel,
    AliyunVoiceChannel,
    Keys,
    PhoneChannel,
    TencentSmsChannel,
)
from rules.dispatch.providers import Request, aliyun_sms, aliyun_voice, answer_error, tencent_sms


class PhoneRefused(Exception):
    def __init__(self, channel: str, reason: str, status: int | None = None) -> None:
        self.channel = channel
        self.reason = reason
        self.status = status
        super().__init__(f"channel {channel}: {reason}")


def build(channel: PhoneChannel, keys: Keys, mobile: str, values: dict[str, str],
          now: datetime, nonce: str) -> Request:
    if isinstance(channel, AliyunSmsChannel):
        return aliyun_sms(channel, keys, mobile, values, now, nonce)
    if isinstance(channel, AliyunVoiceChannel):
        return aliyun_voice(channel, keys, mobile, values, now, nonce)
    assert isinstance(channel, TencentSmsChannel)
    return tencent_sms(channel, keys, mobile, values, now)


async def send(client: httpx.AsyncClient, name: str, channel: PhoneChannel, keys: Keys | None,
               mobile: str, payload: dict[str, Any], timeout_s: float) -> int:
    """Send one message; returns the HTTP status; PhoneRefused when it was not accepted."""
    if keys is None:
        raise PhoneRefused(name, "no keys for this channel (environment variables not set)")
    if not mobile:
        raise PhoneRefused(name, "the person has no mobile number")
    values = {str(k): str(v) for k, v in payload.items()}
    req = build(channel, keys, mobile, values, datetime.now(UTC), uuid.uuid4().hex)
    resp = await client.request(req.method, req.url, headers=req.headers,
                                content=req.body or None, timeout=timeout_s)
    if resp.status_code >= 300:
        raise PhoneRefused(name, f"HTTP {resp.status_code}: {resp.text[:200]}",
                           resp.status_code)
    try:
        answer = resp.json()
    except ValueError:
        answer = None
    error = answer_error(channel.type, answer)
    if error:
        raise PhoneRefused(name, error[:300], resp.status_code)
    return resp.status_code
