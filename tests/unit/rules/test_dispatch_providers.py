"""The providers' signers against their documents' worked examples, and the requests built
for SMS and voice calls (pure: time and nonce given)."""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime

from pydantic import SecretStr

from rules.dispatch.alerting import AliyunSmsChannel, Keys, TencentSmsChannel
from rules.dispatch.providers import (
    aliyun_signature,
    aliyun_sms,
    aliyun_string_to_sign,
    answer_error,
    tencent_authorization,
    tencent_sms,
)

# Alibaba Cloud's RPC signature document: DescribeRegions with AccessKeySecret "testsecret".
ALIYUN_DOC = {
    "AccessKeyId": "testid", "Action": "DescribeRegions", "Format": "XML",
    "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
    "SignatureVersion": "1.0", "Timestamp": "2016-02-23T12:46:24Z", "Version": "2014-05-26",
}


def test_aliyun_rpc_signature_reproduces_the_documented_example() -> None:
    assert aliyun_string_to_sign(ALIYUN_DOC) == (
        "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML"
        "%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-"
        "4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46"
        "%253A24Z%26Version%3D2014-05-26")
    assert aliyun_signature(ALIYUN_DOC, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


def test_tencent_tc3_signature_reproduces_the_documented_example() -> None:
    # Tencent Cloud "Signature v3": CVM DescribeInstances at 1551113065 (2019-02-25 UTC).
    body = (b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], '
            b'"Name": "instance-name"}]}')
    auth = tencent_authorization("AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******",
                                 "Gu5t9xGARNpq86cd98joQYCN3*******", "cvm",
                                 "cvm.tencentcloudapi.com", body, 1551113065)
    assert auth == (
        "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/"
        "tc3_request, SignedHeaders=content-type;host, Signature="
        "2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c")


KEYS = Keys(SecretStr("id-1"), SecretStr("secret-1"))
VALUES = {"headline": "超时未确认 升级", "source": "a-elevator-2", "title": "电梯困人 & 'x'"}
NOW = datetime(2025, 3, 5, 2, 0, 7, tzinfo=UTC)


def test_aliyun_sms_request_carries_a_signature_over_its_own_query() -> None:
    channel = AliyunSmsChannel(type="aliyun_sms", sign_name="物业", template_code="SMS_1",
                               endpoint="http://127.0.0.1:9/")  # type: ignore[arg-type]
    req = aliyun_sms(channel, KEYS, "+8613800000001", VALUES, NOW, "n-1")
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(req.url).query,
                                        keep_blank_values=True))
    signature = query.pop("Signature")
    assert signature == aliyun_signature(query, "secret-1")
    assert query["PhoneNumbers"] == "13800000001"
    assert query["Timestamp"] == "2025-03-05T02:00:07Z"
    assert json.loads(query["TemplateParam"])["source"] == "a-elevator-2"
    assert "secret-1" not in req.url


def test_tencent_sms_request_signs_its_body_and_host() -> None:
    channel = TencentSmsChannel(type="tencent_sms", sdk_app_id="1400000000", sign_name="物业",
                                template_id="100", endpoint="http://127.0.0.1:9/")  # type: ignore[arg-type]
    req = tencent_sms(channel, KEYS, "13800000001", VALUES, NOW)
    body = json.loads(req.body)
    assert body["PhoneNumberSet"] == ["+8613800000001"]
    assert req.headers["Authorization"] == tencent_authorization(
        "id-1", "secret-1", "sms", "127.0.0.1:9", req.body, int(NOW.timestamp()))
    assert "2025-03-05/sms/tc3_request" in req.headers["Authorization"]


def test_answers_that_are_refusals() -> None:
    assert answer_error("aliyun_sms", {"Code": "OK"}) == ""
    assert answer_error("aliyun_voice", {"Code": "isv.BUSINESS_LIMIT_CONTROL",
                                         "Message": "limit"}).startswith("isv.")
    assert answer_error("tencent_sms", {"Response": {"SendStatusSet": [{"Code": "Ok"}]}}) == ""
    assert "AuthFailure" in answer_error(
        "tencent_sms", {"Response": {"Error": {"Code": "AuthFailure.SignatureFailure"}}})
    assert answer_error("tencent_sms", {"Response": {"SendStatusSet": []}}) != ""
