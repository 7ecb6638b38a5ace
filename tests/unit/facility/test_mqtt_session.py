"""The MQTT packet codec of ingest's receiver: PUBLISH packets split anywhere in the stream
are reassembled, v5 properties skipped, QoS and flags read; outgoing packets are well formed."""

from __future__ import annotations

import struct

import pytest

from facility.mqtt_session import (
    Delivery,
    PacketReader,
    ProtocolViolation,
    connect_packet,
    puback_packets,
    subscribe_packet,
    varint,
)


def publish(topic: bytes, payload: bytes, *, qos: int = 1, pid: int = 7, dup: bool = False,
            retain: bool = False, props: bytes | None = None) -> bytes:
    body = struct.pack(">H", len(topic)) + topic
    if qos:
        body += struct.pack(">H", pid)
    if props is not None:
        body += varint(len(props)) + props
    body += payload
    head = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    return bytes([head]) + varint(len(body)) + body


def test_packets_split_at_every_byte_are_reassembled_in_order() -> None:
    big = b"x" * 20_000  # a remaining length of 3 bytes
    stream = (publish(b"a/b", b"one", props=b"") + b"\x90\x03\x00\x01\x01"  # a SUBACK
              + publish(b"c", big, pid=9, dup=True, props=b"\x01\x01")
              + publish(b"q0", b"zero", qos=0, retain=True, props=b""))
    for cut in (1, 2, 3, 5, 17, 4096):
        reader = PacketReader(v5=True)
        reader.epoch = 4
        out: list[Delivery] = []
        control: list[tuple[int, bytes]] = []
        for i in range(0, len(stream), cut):
            reader.feed(stream[i:i + cut], out, control)
        assert out == [Delivery(b"a/b", b"one", 7, False, False, 4),
                       Delivery(b"c", big, 9, True, False, 4),
                       Delivery(b"q0", b"zero", 0, False, True, 4)]
        assert control == [(9, b"\x00\x01\x01")]


def test_mqtt_311_publish_has_no_properties() -> None:
    out: list[Delivery] = []
    PacketReader(v5=False).feed(publish(b"t", b"\x01\x02"), out, [])
    assert out == [Delivery(b"t", b"\x01\x02", 7, False, False, 0)]


def test_a_remaining_length_over_four_bytes_is_a_violation() -> None:
    with pytest.raises(ProtocolViolation):
        PacketReader(v5=True).feed(b"\x30\xff\xff\xff\xff\x01", [], [])


def test_outgoing_packets() -> None:
    assert puback_packets([1, 258]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"
    c5 = connect_packet("ingest-x", v5=True, keepalive_s=30, receive_maximum=20_000,
                        clean=False)
    assert c5[0] == 0x10 and c5[8] == 5 and c5[9] == 0  # MQTT 5, clean start off
    assert b"\x21" + struct.pack(">H", 20_000) in c5 and c5.endswith(b"ingest-x")
    c4 = connect_packet("i", v5=False, keepalive_s=30, receive_maximum=1, clean=True)
    assert c4[8] == 4 and c4[9] == 0x02
    sub = subscribe_packet(1, ["a/#", "$share/g/b"], v5=True)
    assert sub[0] == 0x82 and sub.endswith(b"\x00\x0a$share/g/b\x01")
