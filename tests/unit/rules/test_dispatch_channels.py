"""Notification formats and routing: pure."""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from datetime import UTC, datetime, timedelta

from rules.dispatch.channels import (
    Notice,
    dingtalk_payload,
    dingtalk_signed_url,
    plan,
    wecom_payload,
)
from rules.dispatch.config import DispatchConfig, Retry, Staff
from rules.dispatch.notify import backoff

CONFIG = DispatchConfig.model_validate({
    "site": "demo",
    "staff": [{"username": "wang", "name": "王工", "mobile": "13800000001",
               "email": "wang@example.com", "channels": ["mail"]}],
    "channels": {
        "hook": {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
        "wecom": {"type": "wecom", "url": "http://127.0.0.1:9/wecom"},
        "ding": {"type": "dingtalk", "url": "http://127.0.0.1:9/ding?access_token=x",
                 "secret": "SEC"},
        "mail": {"type": "email", "host": "127.0.0.1", "from": "f@example.com",
                 "to": ["duty@example.com"]},
        "off": {"type": "webhook", "url": "http://127.0.0.1:9/off", "enabled": False},
    },
    "notify": {"always": ["hook", "off"]},
})
WANG = CONFIG.staff[0]
NOTICE = Notice("escalated", "demo", 7, "电梯困人处理流程: a-elevator-2", "a-elevator-2",
                "critical", "assigned", datetime(2025, 3, 5, 2, tzinfo=UTC), (WANG,),
                "engineering_supervisor: 工程主管督促维保单位并到场协调")


def test_wecom_is_a_markdown_robot_message() -> None:
    p = wecom_payload(NOTICE)
    assert p["msgtype"] == "markdown"
    content = p["markdown"]["content"]
    assert "超时未接单" in content and "a-elevator-2" in content and "王工" in content
    assert 'color="warning"' in content


def test_dingtalk_mentions_the_people_by_mobile() -> None:
    p = dingtalk_payload(NOTICE)
    assert p["msgtype"] == "markdown"
    assert p["at"] == {"atMobiles": ["13800000001"], "isAtAll": False}
    assert "@13800000001" in p["markdown"]["text"]
    assert p["markdown"]["title"]


def test_dingtalk_signature_follows_the_documented_recipe() -> None:
    url = dingtalk_signed_url("https://oapi.dingtalk.com/robot/send?access_token=t", "SEC",
                              1700000000000)
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    assert query["timestamp"] == ["1700000000000"]
    expected = base64.b64encode(hmac.new(b"SEC", b"1700000000000\nSEC",
                                         hashlib.sha256).digest()).decode()
    assert query["sign"] == [expected]
    assert query["access_token"] == ["t"]


def test_plan_routes_to_personal_group_and_always_channels_once() -> None:
    out = plan(CONFIG, NOTICE, group_channels=("wecom", "ding", "hook"))
    assert [(o.channel, o.recipient) for o in out] == [
        ("mail", "wang@example.com"), ("mail", "duty@example.com"),
        ("wecom", "wang"), ("ding", "wang"), ("hook", "wang")]
    hook = next(o for o in out if o.channel == "hook")
    assert hook.payload["event"] == "escalated" and hook.payload["work_order_id"] == 7
    mail = out[0]
    assert "超时未接单" in mail.subject and mail.payload == {}
    assert "a-elevator-2" in mail.body


def test_plan_skips_disabled_channels_and_people_without_address() -> None:
    nobody = Notice("unassigned", "demo", 1, "t", "s", "low", "open", NOTICE.ts,
                    (Staff(username="x"),))
    assert [o.channel for o in plan(CONFIG, nobody)] == ["hook"]


def test_backoff_doubles_up_to_the_cap() -> None:
    retry = Retry(initial=2, max=10)
    assert [backoff(retry, n) for n in (1, 2, 3, 4)] == [
        timedelta(seconds=s) for s in (2, 4, 8, 10)]
