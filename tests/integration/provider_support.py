"""A local stand-in for the SMS and voice providers (asyncio HTTP server on 127.0.0.1, a free
port): Alibaba Cloud RPC GETs (SendSms, SingleCallByTts) and Tencent Cloud TC3 POSTs
(SendSms). It checks every request's signature with the providers' documented algorithms,
written here again independently of rules/dispatch/providers.py (byte-by-byte percent
encoding, the key derivation spelled out), answers like the provider (a bad signature gets
the provider's refusal) and records what it received and when."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from facility.ports import free_port

UNRESERVED = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~"


def pct(text: str) -> str:
    return "".join(chr(b) if b in UNRESERVED else f"%{b:02X}" for b in text.encode())


def unpct(text: str) -> str:
    out, i, raw = bytearray(), 0, text.encode()
    while i < len(raw):
        if raw[i] == ord("%"):
            out.append(int(raw[i + 1:i + 3], 16))
            i += 3
        else:
            out.append(raw[i])
            i += 1
    return out.decode()


def aliyun_ok(params: dict[str, str], secret: str) -> bool:
    given = params.get("Signature", "")
    rest = sorted((k, v) for k, v in params.items() if k != "Signature")
    canonical = "&".join(pct(k) + "=" + pct(v) for k, v in rest)
    to_sign = "GET&" + pct("/") + "&" + pct(canonical)
    mac = hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(base64.b64encode(mac).decode(), given)


def tencent_ok(headers: dict[str, str], body: bytes, secret_id: str, secret_key: str) -> bool:
    ts = int(headers["x-tc-timestamp"])
    day = datetime.fromtimestamp(ts, UTC).date().isoformat()
    canonical = (f"POST\n/\n\ncontent-type:{headers['content-type']}\nhost:{headers['host']}\n"
                 f"\ncontent-type;host\n{hashlib.sha256(body).hexdigest()}")
    to_sign = (f"TC3-HMAC-SHA256\n{ts}\n{day}/sms/tc3_request\n"
               f"{hashlib.sha256(canonical.encode()).hexdigest()}")
    k_date = hmac.new(("TC3" + secret_key).encode(), day.encode(), hashlib.sha256).digest()
    k_service = hmac.new(k_date, b"sms", hashlib.sha256).digest()
    k_signing = hmac.new(k_service, b"tc3_request", hashlib.sha256).digest()
    sig = hmac.new(k_signing, to_sign.encode(), hashlib.sha256).hexdigest()
    expected = (f"TC3-HMAC-SHA256 Credential={secret_id}/{day}/sms/tc3_request, "
                f"SignedHeaders=content-type;host, Signature={sig}")
    return hmac.compare_digest(expected, headers.get("authorization", ""))


@dataclass
class Received:
    kind: str  # SendSms, SingleCallByTts, TencentSendSms
    at: datetime
    at_mono: float
    params: dict[str, Any]
    signature_ok: bool


@dataclass
class ProviderServer:
    aliyun: tuple[str, str]  # AccessKeyId, secret
    tencent: tuple[str, str]  # SecretId, SecretKey
    received: list[Received] = field(default_factory=list)
    port: int = 0
    fail_next: int = 0  # answer this many requests with a provider error first
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def of(self, kind: str) -> list[Received]:
        return [r for r in self.received if r.kind == kind]

    async def wait(self, kind: str, count: int = 1, timeout_s: float = 20) -> list[Received]:
        async with asyncio.timeout(timeout_s):
            while len(self.of(kind)) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.of(kind)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method, target, _ = (await reader.readline()).decode().split(" ", 2)
        headers: dict[str, str] = {}
        while line := (await reader.readline()).decode().strip():
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        now, mono = datetime.now(UTC), time.monotonic()
        if method == "GET":
            query = target.partition("?")[2]
            params = dict((unpct(k), unpct(v)) for k, _, v in
                          (p.partition("=") for p in query.split("&")))
            ok = params.get("AccessKeyId") == self.aliyun[0] and aliyun_ok(params,
                                                                          self.aliyun[1])
            kind = params.get("Action", "?")
            answer: dict[str, Any] = ({"Code": "OK", "Message": "OK", "RequestId": "r"} if ok
                                      else {"Code": "SignatureDoesNotMatch", "Message": "bad"})
        else:
            params = json.loads(body)
            ok = tencent_ok(headers, body, *self.tencent)
            kind = "TencentSendSms"
            answer = ({"Response": {"SendStatusSet": [{"Code": "Ok"}], "RequestId": "r"}} if ok
                      else {"Response": {"Error": {"Code": "AuthFailure.SignatureFailure",
                                                   "Message": "bad"}}})
        if ok and self.fail_next > 0:
            self.fail_next -= 1
            answer = {"Code": "isp.SYSTEM_ERROR", "Message": "busy"}
            answer = answer if method == "GET" else {"Response": {"Error": answer}}
        self.received.append(Received(kind, now, mono, params, ok))
        self.arrived.set()
        data = json.dumps(answer).encode()
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def provider_server(aliyun: tuple[str, str], tencent: tuple[str, str]
                          ) -> AsyncIterator[ProviderServer]:
    server = ProviderServer(aliyun, tencent)
    server.port = free_port()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", server.port)
    async with listener:
        yield server


def phone_channels(url: str) -> dict[str, Any]:
    """The dispatch file's channels pointing at the local server."""
    return {
        "ali-sms": {"type": "aliyun_sms", "endpoint": url, "sign_name": "物业值班",
                    "template_code": "SMS_100001"},
        "ali-call": {"type": "aliyun_voice", "endpoint": url, "tts_code": "TTS_100002",
                     "called_show_number": "057100000000"},
        "tc-sms": {"type": "tencent_sms", "endpoint": url, "sdk_app_id": "1400000001",
                   "sign_name": "物业值班", "template_id": "100003"},
    }


KEYS_ENV = {"FACILITY_ALIYUN_ACCESS_KEY_ID": "LTAI-test", "FACILITY_ALIYUN_ACCESS_KEY_SECRET":
            "ali-secret", "FACILITY_TENCENT_SECRET_ID": "AKID-test",
            "FACILITY_TENCENT_SECRET_KEY": "tc-secret"}
