"""Requests of the SMS and voice-call providers, signed; pure (no I/O, no clock: the time and
the nonce are arguments).

Alibaba Cloud RPC signature, version 1.0 (the SMS "signature method" page
https://www.alibabacloud.com/help/en/sms/signature-method and the RPC "signature mechanism",
https://help.aliyun.com/document_detail/69009.html): sort every parameter but
``Signature`` by name; percent-encode names and values in UTF-8 leaving only ``A-Z a-z 0-9 -
_ . ~`` (a space is ``%20``); join ``name=value`` with ``&`` into the canonicalized query
string; ``StringToSign = "GET&" + enc("/") + "&" + enc(canonicalized)``; ``Signature =
Base64(HMAC-SHA1(AccessKeySecret + "&", StringToSign))``. Used for SendSms (dysmsapi,
version 2017-05-25) and SingleCallByTts (dyvmsapi, 2017-05-25) as GET requests.

Tencent Cloud API signature v3, TC3-HMAC-SHA256 ("Signature v3",
https://www.tencentcloud.com/document/product/1154/48911):
``CanonicalRequest = "POST\\n/\\n\\n" + "content-type:" + ct +
"\\nhost:" + host + "\\n\\n" + "content-type;host\\n" + hex(SHA256(body))``; ``StringToSign =
"TC3-HMAC-SHA256\\n" + timestamp + "\\n" + date + "/" + service + "/tc3_request\\n" +
hex(SHA256(CanonicalRequest))`` with ``date`` the UTC date of the timestamp; the key is
derived ``HMAC("TC3" + SecretKey, date) -> HMAC(., service) -> HMAC(., "tc3_request")`` and
``Signature = hex(HMAC(key, StringToSign))``, sent in ``Authorization: TC3-HMAC-SHA256
Credential=SecretId/date/service/tc3_request, SignedHeaders=content-type;host,
Signature=...``. Used for SendSms (sms, version 2021-01-11).

Both algorithms reproduce their documents' worked examples (tests/unit/rules/
test_dispatch_providers.py)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rules.dispatch.alerting import (
    AliyunSmsChannel,
    AliyunVoiceChannel,
    Keys,
    TencentSmsChannel,
)

ALIYUN_VERSION = "2017-05-25"  # dysmsapi and dyvmsapi
TENCENT_SMS_VERSION = "2021-01-11"
TENCENT_CONTENT_TYPE = "application/json; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes = b""


def aliyun_encode(text: str) -> str:
    """Alibaba's percent-encoding: only A-Z a-z 0-9 - _ . ~ stay as they are."""
    return urllib.parse.quote(text, safe="-_.~")


def aliyun_string_to_sign(params: dict[str, str], method: str = "GET") -> str:
    canonical = "&".join(f"{aliyun_encode(k)}={aliyun_encode(v)}"
                         for k, v in sorted(params.items()))
    return f"{method}&{aliyun_encode('/')}&{aliyun_encode(canonical)}"


def aliyun_signature(params: dict[str, str], secret: str, method: str = "GET") -> str:
    digest = hmac.new(f"{secret}&".encode(), aliyun_string_to_sign(params, method).encode(),
                      hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def aliyun_request(endpoint: str, action: str, region: str, keys: Keys,
                   params: dict[str, str], now: datetime, nonce: str) -> Request:
    """A signed GET of an Alibaba Cloud RPC action."""
    full = {
        "AccessKeyId": keys.key_id.get_secret_value(), "Action": action, "Format": "JSON",
        "RegionId": region, "SignatureMethod": "HMAC-SHA1", "SignatureNonce": nonce,
        "SignatureVersion": "1.0", "Timestamp": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Version": ALIYUN_VERSION, **params,
    }
    full["Signature"] = aliyun_signature(full, keys.secret.get_secret_value())
    query = "&".join(f"{aliyun_encode(k)}={aliyun_encode(v)}" for k, v in full.items())
    base = endpoint if endpoint.endswith("/") else endpoint + "/"
    return Request("GET", f"{base}?{query}", {})


def tencent_authorization(secret_id: str, secret_key: str, service: str, host: str,
                          body: bytes, timestamp: int) -> str:
    """The Authorization header of a TC3-HMAC-SHA256 signed POST to ``/``."""
    canonical = "\n".join([
        "POST", "/", "", f"content-type:{TENCENT_CONTENT_TYPE}\nhost:{host}\n",
        "content-type;host", hashlib.sha256(body).hexdigest()])
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    scope = f"{date}/{service}/tc3_request"
    to_sign = "\n".join(["TC3-HMAC-SHA256", str(timestamp), scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])

    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    key = mac(mac(mac(f"TC3{secret_key}".encode(), date), service), "tc3_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return (f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, "
            f"SignedHeaders=content-type;host, Signature={signature}")


def _params(values: list[str], limit: int) -> list[str]:
    return [v[:limit] for v in values]


def aliyun_sms(channel: AliyunSmsChannel, keys: Keys, mobile: str, values: dict[str, str],
               now: datetime, nonce: str) -> Request:
    param = {k: values.get(k, "")[: channel.param_max_chars] for k in channel.params}
    return aliyun_request(str(channel.endpoint), "SendSms", channel.region, keys, {
        "PhoneNumbers": domestic(mobile), "SignName": channel.sign_name,
        "TemplateCode": channel.template_code,
        "TemplateParam": json.dumps(param, ensure_ascii=False, separators=(",", ":")),
    }, now, nonce)


def aliyun_voice(channel: AliyunVoiceChannel, keys: Keys, mobile: str,
                 values: dict[str, str], now: datetime, nonce: str) -> Request:
    param = {k: values.get(k, "")[: channel.param_max_chars] for k in channel.params}
    params = {"CalledNumber": domestic(mobile), "TtsCode": channel.tts_code,
              "TtsParam": json.dumps(param, ensure_ascii=False, separators=(",", ":")),
              "PlayTimes": str(channel.play_times)}
    if channel.called_show_number:
        params["CalledShowNumber"] = channel.called_show_number
    return aliyun_request(str(channel.endpoint), "SingleCallByTts", channel.region, keys,
                          params, now, nonce)


def tencent_sms(channel: TencentSmsChannel, keys: Keys, mobile: str, values: dict[str, str],
                now: datetime) -> Request:
    body = json.dumps({
        "PhoneNumberSet": [international(mobile)], "SmsSdkAppId": channel.sdk_app_id,
        "SignName": channel.sign_name, "TemplateId": channel.template_id,
        "TemplateParamSet": _params([values.get(k, "") for k in channel.params],
                                    channel.param_max_chars),
    }, ensure_ascii=False).encode()
    endpoint = str(channel.endpoint)
    host = urllib.parse.urlsplit(endpoint).netloc
    timestamp = int(now.timestamp())
    auth = tencent_authorization(keys.key_id.get_secret_value(),
                                 keys.secret.get_secret_value(), "sms", host, body, timestamp)
    return Request("POST", endpoint, {
        "Authorization": auth, "Content-Type": TENCENT_CONTENT_TYPE, "Host": host,
        "X-TC-Action": "SendSms", "X-TC-Version": TENCENT_SMS_VERSION,
        "X-TC-Timestamp": str(timestamp), "X-TC-Region": channel.region}, body)


def domestic(mobile: str) -> str:
    """Alibaba takes mainland numbers without the country code."""
    return mobile[3:] if mobile.startswith("+86") else mobile.lstrip("+")


def international(mobile: str) -> str:
    """Tencent takes E.164: a mainland number gets +86."""
    return mobile if mobile.startswith("+") else f"+86{mobile}"


def answer_error(channel_type: str, answer: Any) -> str:
    """Why a provider's HTTP 200 answer is a refusal; '' when it accepted the message."""
    if not isinstance(answer, dict):
        return "answer is not a JSON object"
    if channel_type.startswith("aliyun"):
        code = answer.get("Code")
        return "" if code == "OK" else f"{code}: {answer.get('Message', '')}"
    response = answer.get("Response")
    if not isinstance(response, dict):
        return "answer has no Response"
    if "Error" in response:
        err = response["Error"]
        return f"{err.get('Code')}: {err.get('Message', '')}" if isinstance(err, dict) else "error"
    statuses = response.get("SendStatusSet") or []
    bad = [s for s in statuses if isinstance(s, dict) and s.get("Code") != "Ok"]
    if not statuses or bad:
        first = bad[0] if bad else {}
        return f"{first.get('Code', 'no status')}: {first.get('Message', '')}"
    return ""
