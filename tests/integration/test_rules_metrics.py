"""The rules service's /metrics, scraped over HTTP while it works against the real broker and
database: messages, stale and refused ones, the events it published, the database gauge."""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import UTC, datetime
from pathlib import Path

import httpx

from facility import topics
from facility.messages import Telemetry, encode
from facility.topics import TopicKind
from rules.service import run_rules
from tests.integration.test_rules_service import (
    PROCEDURES,
    TRAPPED,
    eventually,
    make_site,
    publisher,
)


def sample(text: str, name: str, labels: str = "") -> float:
    """The value of one sample: ``name{...labels...}`` (labels: a substring to match)."""
    for line in text.splitlines():
        m = re.match(rf"^{re.escape(name)}{{([^}}]*)}} (\S+)$", line)
        if m and labels in m.group(1):
            return float(m.group(2))
    raise AssertionError(f"no sample {name} {labels} in:\n{text}")


async def test_metrics_count_what_the_service_did(
    tmp_path: Path, database_url: str, mqtt_url: str, mqtt_protocol: str, site_id: str,
) -> None:
    site = make_site(tmp_path, site_id, on_delay_s=0.3)
    lift = f"{site_id}-lift"
    topic = topics.device_topic(TopicKind.TELEMETRY, site_id, "gw-a", lift)
    port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    ready = asyncio.Event()
    task = asyncio.create_task(run_rules(
        site, database_url, mqtt_url, procedures_dir=PROCEDURES, mqtt_protocol=mqtt_protocol,
        ready=ready, tick_s=0.1, metrics_port=0, metrics_started=port.set_result))
    try:
        async with asyncio.timeout(20):
            await ready.wait()
        url = f"http://127.0.0.1:{await port}/metrics"
        async with publisher(mqtt_url, mqtt_protocol) as pub:
            trapped = encode(Telemetry(ts=datetime.now(UTC), seq=5, session="s1",
                                       points=TRAPPED))
            await pub.publish(topic, trapped, qos=1, timeout_s=5)
            await pub.publish(topic, trapped, qos=1, timeout_s=5)  # a duplicate
            await pub.publish(topic, b"not json", qos=1, timeout_s=5)
            await eventually(database_url, "SELECT id FROM work_orders")
        async with httpx.AsyncClient(timeout=5) as http:
            for _ in range(50):  # the events are counted as they are published
                resp = await http.get(url)
                if 'event="work_order.created"' in resp.text:
                    break
                await asyncio.sleep(0.1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert f'site="{site_id}"' in text and f'client_id="rules-{site_id}"' in text
    assert sample(text, "rules_messages_total") == 3
    assert sample(text, "rules_stale_messages_total") == 1
    assert sample(text, "rules_dead_letters_total") == 1
    assert sample(text, "rules_events_total", 'event="alarm.raised"') == 1
    assert sample(text, "rules_events_total", 'event="work_order.created"') == 1
    assert sample(text, "rules_database_up") == 1
    assert sample(text, "rules_rule_states") >= 1
