"""SMS and voice deliveries against the local provider server (which checks each signature
by the providers' documented algorithms) and a real PostgreSQL, time injected: a provider
error is retried and every attempt recorded; a wrong key is refused by the provider's check
and given up; a provider that is gone is a connection error; nobody's secret is stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from pydantic import SecretStr

from facility.ports import free_port
from rules.dispatch.alerting import Keys, resolve_keys
from rules.dispatch.channels import Notice
from rules.dispatch.config import DispatchConfig
from rules.dispatch.notify import Deliverer, enqueue
from tests.integration.provider_support import KEYS_ENV, phone_channels, provider_server

T0 = datetime(2025, 3, 5, 2, 0, tzinfo=UTC)


def config(url: str) -> DispatchConfig:
    return DispatchConfig.model_validate({
        "site": "demo", "staff": [{"username": "wang", "mobile": "13800000031"}],
        "channels": phone_channels(url),
        "loud": {"sms": ["ali-sms", "tc-sms"], "voice": ["ali-call"],
                 "by_priority": {"critical": {"sms_after": "0s", "voice_after": "1m"}}},
        "notify": {"retry": {"attempts": 2, "initial": "1s", "max": "1m", "timeout": "5s"}},
    })


def notice(cfg: DispatchConfig) -> Notice:
    return Notice("alarm_escalated", "demo", None, "电梯困人: a-elevator-2", "a-elevator-2",
                  "critical", "unack", T0, cfg.staff, "next")


async def rows(conn: psycopg.AsyncConnection[Any], sql: str) -> list[tuple[Any, ...]]:
    return list(await (await conn.execute(sql)).fetchall())


async def test_a_provider_error_is_retried_and_a_wrong_key_is_refused(database_url: str) -> None:
    async with provider_server(("LTAI-test", "ali-secret"), ("AKID-test", "tc-secret")) as srv, \
            await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn, \
            httpx.AsyncClient() as client:
        cfg = config(srv.url())
        keys, _ = resolve_keys(cfg.channels, KEYS_ENV)
        keys["tc-sms"] = Keys(SecretStr("AKID-test"), SecretStr("not-the-key"))
        assert await enqueue(conn, cfg, notice(cfg), cancel_when="alarm_acknowledged") == 3
        srv.fail_next = 1  # the first good request gets isp.SYSTEM_ERROR
        deliverer = Deliverer(cfg, client, keys)
        assert await deliverer.deliver_due(conn, "demo", T0) == 2  # the SMS; the call waits
        assert await deliverer.deliver_due(conn, "demo", T0 + timedelta(seconds=1)) == 2
        assert await deliverer.deliver_due(conn, "demo", T0 + timedelta(minutes=1)) == 1
        states = dict((c, (s, a)) for c, s, a in await rows(
            conn, "SELECT channel, state, attempts FROM notification_deliveries"))
        errors = [e for (e,) in await rows(conn, "SELECT error FROM notification_attempts"
                                                 " WHERE NOT ok ORDER BY time")]
        stored = await rows(conn, "SELECT payload::text || recipient || body FROM"
                                  " notification_deliveries")
    assert states == {"ali-sms": ("sent", 2), "tc-sms": ("failed", 2), "ali-call": ("sent", 1)}
    assert any(e.startswith("isp.SYSTEM_ERROR") for e in errors)
    assert sum(e.startswith("AuthFailure.SignatureFailure") for e in errors) == 2
    assert [r.signature_ok for r in srv.of("TencentSendSms")] == [False, False]
    assert all(r.signature_ok for r in srv.of("SendSms") + srv.of("SingleCallByTts"))
    assert not any("secret" in s or "not-the-key" in s for (s,) in stored)


async def test_a_provider_that_is_gone_is_a_connection_error(database_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn, \
            httpx.AsyncClient() as client:
        cfg = config(f"http://127.0.0.1:{free_port()}/")  # nothing listens here
        keys, _ = resolve_keys(cfg.channels, KEYS_ENV)
        await enqueue(conn, cfg, notice(cfg), cancel_when="alarm_acknowledged")
        deliverer = Deliverer(cfg, client, keys)
        await deliverer.deliver_due(conn, "demo", T0)
        (state, error), = await rows(conn, "SELECT state, last_error FROM"
                                           " notification_deliveries WHERE channel = 'ali-sms'")
    assert state == "pending" and "Connect" in error
