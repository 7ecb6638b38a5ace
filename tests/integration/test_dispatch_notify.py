"""Notification delivery against real local peers: an HTTP receiver (asyncio server on a
free port) playing webhook, WeCom and DingTalk robots, and an SMTP server (aiosmtpd).
Retries with backoff, every attempt recorded, failures given up after the last try."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import hashlib
import hmac
import json
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
from aiosmtpd.controller import Controller

from facility.ports import free_port
from rules.dispatch.channels import Notice
from rules.dispatch.config import DispatchConfig
from rules.dispatch.notify import Deliverer, enqueue

T0 = datetime(2025, 3, 5, 2, 0, tzinfo=UTC)


@dataclass
class Receiver:
    """A tiny HTTP server: answers each request with the next scripted (status, body)."""

    script: list[tuple[int, dict[str, Any]]]
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request_line = (await reader.readline()).decode()
        headers: dict[str, str] = {}
        while (line := (await reader.readline()).decode().strip()):
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.requests.append((request_line.split()[1], json.loads(body)))
        status, answer = self.script.pop(0) if self.script else (200, {"errcode": 0})
        data = json.dumps(answer).encode()
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def receiver(script: list[tuple[int, dict[str, Any]]]) -> AsyncIterator[Receiver]:
    r = Receiver(script)
    r.port = free_port()
    server = await asyncio.start_server(r.handle, "127.0.0.1", r.port)
    async with server:
        yield r


def config(port: int, smtp_port: int = 1, attempts: int = 4) -> DispatchConfig:
    base = f"http://127.0.0.1:{port}"
    return DispatchConfig.model_validate({
        "site": "demo",
        "staff": [{"username": "wang", "name": "王工", "mobile": "13800000001",
                   "email": "wang@example.com"}],
        "channels": {
            "hook": {"type": "webhook", "url": f"{base}/hook"},
            "wecom": {"type": "wecom", "url": f"{base}/wecom?key=k"},
            "ding": {"type": "dingtalk", "url": f"{base}/ding?access_token=t", "secret": "SEC"},
            "mail": {"type": "email", "host": "127.0.0.1", "port": smtp_port,
                     "from": "facility@example.com"},
        },
        "notify": {"retry": {"attempts": attempts, "initial": "1s", "max": "1m",
                             "timeout": "5s"}},
    })


def notice(cfg: DispatchConfig) -> Notice:
    return Notice("escalated", "demo", None, "电梯困人处理流程: a-elevator-2", "a-elevator-2",
                  "critical", "assigned", T0, cfg.staff, "engineering_supervisor")


async def rows(conn: psycopg.AsyncConnection[Any], sql: str) -> list[tuple[Any, ...]]:
    return list(await (await conn.execute(sql)).fetchall())


async def test_webhook_that_fails_twice_is_retried_with_backoff_until_it_succeeds(
    database_url: str,
) -> None:
    async with receiver([(500, {}), (503, {})]) as r, \
            await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn, \
            httpx.AsyncClient() as client:
        cfg = config(r.port)
        assert await enqueue(conn, cfg, notice(cfg), ("hook",)) == 1
        deliverer = Deliverer(cfg, client)
        assert await deliverer.deliver_due(conn, "demo", T0) == 1  # fails: HTTP 500
        assert await deliverer.deliver_due(conn, "demo", T0 + timedelta(seconds=0.5)) == 0
        assert await deliverer.deliver_due(conn, "demo", T0 + timedelta(seconds=1)) == 1  # 503
        # the second pause is twice the first
        assert await deliverer.deliver_due(conn, "demo", T0 + timedelta(seconds=2.9)) == 0
        assert await deliverer.deliver_due(conn, "demo", T0 + timedelta(seconds=3)) == 1
        assert len(r.requests) == 3
        path, body = r.requests[-1]
        assert path == "/hook" and body["event"] == "escalated"
        assert body["people"][0]["username"] == "wang"
        assert await rows(conn, "SELECT state, attempts, channel_type FROM"
                                " notification_deliveries") == [("sent", 3, "webhook")]
        attempts = await rows(conn, "SELECT attempt, ok, status FROM notification_attempts"
                                    " ORDER BY attempt")
        assert attempts == [(1, False, 500), (2, False, 503), (3, True, 200)]


async def test_robots_get_their_formats_and_an_errcode_is_a_failure(database_url: str) -> None:
    script: list[tuple[int, dict[str, Any]]] = [
        (200, {"errcode": 45009, "errmsg": "api freq out of limit"}), (200, {"errcode": 0}),
              (200, {"errcode": 0})]
    async with receiver(script) as r, \
            await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn, \
            httpx.AsyncClient() as client:
        cfg = config(r.port)
        await enqueue(conn, cfg, notice(cfg), ("wecom",))
        deliverer = Deliverer(cfg, client)
        await deliverer.deliver_due(conn, "demo", T0)
        await enqueue(conn, cfg, notice(cfg), ("ding",))
        await deliverer.deliver_due(conn, "demo", T0 + timedelta(seconds=5))
        got = {path.split("?")[0]: (path, body) for path, body in r.requests}
        assert got["/wecom"][1]["msgtype"] == "markdown"
        assert "超时未接单" in got["/wecom"][1]["markdown"]["content"]
        ding_path, ding = got["/ding"]
        assert ding["at"]["atMobiles"] == ["13800000001"]
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(ding_path).query)
        ts = query["timestamp"][0]
        expected = base64.b64encode(hmac.new(b"SEC", f"{ts}\nSEC".encode(),
                                             hashlib.sha256).digest()).decode()
        assert query["sign"] == [expected] and query["access_token"] == ["t"]
        states = await rows(conn, "SELECT channel, state, attempts, last_error FROM"
                                  " notification_deliveries ORDER BY id")
        assert states[0][:3] == ("wecom", "sent", 2)  # errcode 45009, then accepted
        assert states[1][:3] == ("ding", "sent", 1)
        failed = await rows(conn, "SELECT error FROM notification_attempts WHERE NOT ok")
        assert len(failed) == 1 and "45009" in failed[0][0]


async def test_a_dead_endpoint_is_given_up_after_the_last_try(database_url: str) -> None:
    port = free_port()  # nothing listens here
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn, \
            httpx.AsyncClient() as client:
        cfg = config(port, attempts=2)
        await enqueue(conn, cfg, notice(cfg), ("hook",))
        deliverer = Deliverer(cfg, client)
        await deliverer.deliver_due(conn, "demo", T0)
        await deliverer.deliver_due(conn, "demo", T0 + timedelta(seconds=1))
        assert await deliverer.deliver_due(conn, "demo", T0 + timedelta(hours=1)) == 0
        (state, attempts, error), = await rows(
            conn, "SELECT state, attempts, last_error FROM notification_deliveries")
        assert (state, attempts) == ("failed", 2)
        assert "Connect" in error


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


async def test_email_goes_through_a_real_smtp_server(database_url: str) -> None:
    inbox = Inbox()
    smtp_port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    try:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn, \
                httpx.AsyncClient() as client:
            cfg = config(1, smtp_port)
            cfg = cfg.model_copy(update={"staff": (cfg.staff[0].model_copy(
                update={"channels": ("mail",)}),)})
            assert await enqueue(conn, cfg, notice(cfg)) == 1
            assert await Deliverer(cfg, client).deliver_due(conn, "demo", T0) == 1
            assert await rows(conn, "SELECT state, recipient FROM notification_deliveries") \
                == [("sent", "wang@example.com")]
    finally:
        controller.stop()
    (rcpts, content), = inbox.messages
    assert rcpts == ["wang@example.com"]
    msg = email.message_from_bytes(content, policy=email.policy.default)
    assert "超时未接单" in str(msg["Subject"])
    assert "a-elevator-2" in msg.get_body().get_content()  # type: ignore[union-attr]
