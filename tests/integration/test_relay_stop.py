"""The outbox relay at a stop, against a real mosquitto (paused with SIGSTOP: a broker that
takes the PUBLISH into its socket and answers nothing) and a real PostgreSQL: the batch in
hand is finished, acknowledgement and watermark, so that the next relay does not publish it
again; a broker that stays silent past the bound leaves the batch to the next relay, which
publishes it under the same event id. Found by a fresh-clone run: a rules process stopped
right after its last event reached a subscriber, before the watermark was written."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from facility import events as outbox
from facility import topics
from facility.messages import AlarmEvent
from facility.mqtt import MqttClient
from rules.relay import OutboxRelay
from stack.embedded.broker import Broker
from tests.integration.stop_support import pause, private_broker, resume


async def record(database_url: str, site_id: str, text: str) -> int:
    """One alarm event in the outbox; its event id."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await outbox.record(conn, site_id, [AlarmEvent(
            ts=datetime.now(UTC), event="alarm.comment", alarm_id=1, detail={"text": text})])
        cur = await conn.execute("SELECT max(id) FROM events WHERE site_id = %s", (site_id,))
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def watermark(database_url: str, site_id: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return await outbox.relay_watermark(conn, site_id)


async def until(check: Callable[[], bool], what: str, timeout_s: float = 15) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            while not check():  # noqa: ASYNC110 - polled, not signalled
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"{what}: not within {timeout_s:.0f} s")


async def relay_with_one_in_hand(
    database_url: str, site_id: str, client: MqttClient, broker: Broker, stop_finish_s: float,
) -> tuple[asyncio.Task[None], int, int]:
    """A running relay that published a first event (acknowledged, recorded) and then a
    second one ``broker``, paused meanwhile, has not acknowledged; the task and both ids."""
    relay = OutboxRelay(database_url, site_id, client, poll_s=0.05,
                        stop_finish_s=stop_finish_s)
    task = asyncio.create_task(relay.run())
    first = await record(database_url, site_id, "first")
    await until(lambda: relay.watermark == first, "the first event relayed")
    pause(broker)
    second = await record(database_url, site_id, "second")
    relay.wake()
    await until(lambda: client.inflight > 0, "the second event published, unacknowledged")
    assert relay.watermark == first
    return task, first, second


async def test_a_stop_finishes_the_batch_in_hand_once_the_broker_acknowledges_it(
    tmp_path: Path, database_url: str, site_id: str,
) -> None:
    with private_broker(tmp_path) as broker:
        async with MqttClient(broker.url, f"relay-{uuid.uuid4().hex[:6]}") as client:
            await client.wait_connected(10)
            task, _first, second = await relay_with_one_in_hand(
                database_url, site_id, client, broker, stop_finish_s=10)
            task.cancel()
            await asyncio.sleep(0.5)  # the broker answers half a second into the stop
            assert not task.done()  # still finishing: the PUBACK has not come
            resume(broker)
            with pytest.raises(asyncio.CancelledError):
                await task
            assert client.inflight == 0
    assert await watermark(database_url, site_id) == second


async def test_a_broker_silent_past_the_bound_leaves_the_batch_to_the_next_relay(
    tmp_path: Path, database_url: str, site_id: str, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="rules.relay")
    with private_broker(tmp_path) as broker:
        async with MqttClient(broker.url, f"relay-{uuid.uuid4().hex[:6]}") as client:
            await client.wait_connected(10)
            task, first, second = await relay_with_one_in_hand(
                database_url, site_id, client, broker, stop_finish_s=0.5)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=30)
            assert done and task.cancelled()  # it ended with the broker still silent
        assert await watermark(database_url, site_id) == first
        assert [r.getMessage() for r in caplog.records if "events in hand" in r.getMessage()] \
            == [f"event relay of site {site_id} stopped with 1 events in hand (not "
                "acknowledged by the broker in 0.5 s): the next relay publishes them again, "
                "under the same event ids"]
        resume(broker)
        # the next relay publishes the second event again, under its id, and records it
        async with MqttClient(broker.url, f"sub-{uuid.uuid4().hex[:6]}") as sub, \
                MqttClient(broker.url, f"relay-{uuid.uuid4().hex[:6]}") as client:
            await sub.wait_connected(10)
            await sub.subscribe(topics.alarms(site_id))
            await sub.wait_subscribed(10)
            relay = OutboxRelay(database_url, site_id, client, poll_s=0.05)
            again = asyncio.create_task(relay.run())
            try:
                await until(lambda: relay.watermark == second, "the next relay's watermark")
                async with asyncio.timeout(15):
                    message = await anext(sub.messages())
            finally:
                again.cancel()
                await asyncio.gather(again, return_exceptions=True)
    event = json.loads(message.payload)
    assert (event["event_id"], event["detail"]) == (second, {"text": "second"})
    assert await watermark(database_url, site_id) == second
