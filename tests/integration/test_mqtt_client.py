"""facility.mqtt.MqttClient against a real broker: subscriptions made before the connection
is up, PUBACK futures, and manual acknowledgement with a persistent session."""

from __future__ import annotations

import asyncio
import uuid

from facility.mqtt import Message, MqttClient


async def _next(client: MqttClient, timeout_s: float = 5.0) -> Message:
    async with asyncio.timeout(timeout_s):
        async for msg in client.messages():
            return msg
    raise AssertionError("unreachable")


async def test_subscription_made_before_connect_is_sent(mqtt_url: str, mqtt_protocol: str,
                                                        site_id: str) -> None:
    topic = f"facility/v1/{site_id}/alarms"
    for _ in range(5):  # the race was between CONNACK and subscribe(): try it a few times
        sub = MqttClient(mqtt_url, f"s-{uuid.uuid4().hex[:8]}", protocol=mqtt_protocol)
        await sub.start()
        await sub.subscribe(topic)  # usually before CONNACK has reached the event loop
        await sub.wait_connected(5)
        await sub.wait_subscribed(5)
        async with MqttClient(mqtt_url, f"p-{uuid.uuid4().hex[:8]}",
                              protocol=mqtt_protocol) as pub:
            await pub.wait_connected(5)
            await pub.publish(topic, b'{"n": 1}', timeout_s=5)
        msg = await _next(sub)
        assert (msg.topic, msg.payload) == (topic, b'{"n": 1}')
        await sub.close()


async def test_unacknowledged_message_is_redelivered_to_the_persistent_session(
    mqtt_url: str, mqtt_protocol: str, site_id: str, broker: object,
) -> None:
    topic = f"facility/v1/{site_id}/alarms"
    client_id = f"m-{uuid.uuid4().hex[:8]}"
    first = MqttClient(mqtt_url, client_id, protocol=mqtt_protocol, persistent=True,
                       manual_ack=True)
    await first.start()
    await first.subscribe(topic)
    await first.wait_connected(5)
    await first.wait_subscribed(5)
    async with MqttClient(mqtt_url, f"p-{uuid.uuid4().hex[:8]}", protocol=mqtt_protocol) as pub:
        await pub.wait_connected(5)
        await pub.publish(topic, b"a", timeout_s=5)
        await pub.publish(topic, b"b", timeout_s=5)
    got = await _next(first)
    assert got.payload == b"a"
    got.ack()
    second_delivery = await _next(first)
    assert second_delivery.payload == b"b"  # received, never acknowledged
    await first.close()

    again = MqttClient(mqtt_url, client_id, protocol=mqtt_protocol, persistent=True,
                       manual_ack=True)
    await again.start()
    redelivered = await _next(again)
    assert redelivered.payload == b"b"
    redelivered.ack()
    await again.close()
