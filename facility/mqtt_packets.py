"""The MQTT packets of the receiving client (``facility.mqtt_session``): CONNECT, SUBSCRIBE
and PUBACK built, PUBLISH and the control packets read from the byte stream. Pure: no I/O."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

_U16 = struct.Struct(">H")
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
_PUBACK_HEAD = b"\x40\x02"
_SESSION_EXPIRY_S = 7 * 24 * 3600


class Delivery(NamedTuple):
    """One received PUBLISH. ``pid`` is 0 for QoS 0; ``dup``: the broker says it may be a
    redelivery; ``epoch``: the connection it came on."""

    topic: bytes
    payload: bytes
    pid: int
    dup: bool
    retain: bool
    epoch: int


class ProtocolViolation(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def varint(n: int) -> bytes:
    """MQTT variable byte integer (remaining length, property length)."""
    out = bytearray()
    while True:
        n, b = divmod(n, 128)
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(s: str) -> bytes:
    b = s.encode()
    return _U16.pack(len(b)) + b


def connect_packet(client_id: str, *, v5: bool, keepalive_s: int, receive_maximum: int,
                   clean: bool, username: str | None = None,
                   password: str | None = None) -> bytes:
    flags = (0x02 if clean else 0x00) | (0x80 if username else 0) | (0x40 if password else 0)
    body = _utf8("MQTT") + bytes([5 if v5 else 4, flags]) + _U16.pack(keepalive_s)
    if v5:
        props = (b"\x11" + struct.pack(">I", 0 if clean else _SESSION_EXPIRY_S)
                 + b"\x21" + _U16.pack(receive_maximum))
        body += varint(len(props)) + props
    body += _utf8(client_id)
    if username:
        body += _utf8(username)
    if password:
        body += _utf8(password)
    return b"\x10" + varint(len(body)) + body


def subscribe_packet(pid: int, filters: Sequence[str], *, v5: bool) -> bytes:
    body = _U16.pack(pid) + (b"\x00" if v5 else b"")
    for f in filters:
        body += _utf8(f) + b"\x01"  # QoS 1; v5: no-local off, retain-as-published off
    return b"\x82" + varint(len(body)) + body


def puback_packets(pids: Sequence[int]) -> bytes:
    return b"".join(_PUBACK_HEAD + _U16.pack(p) for p in pids)


class PacketReader:
    """Splits a byte stream into MQTT packets; PUBLISH packets become deliveries. Pure."""

    def __init__(self, *, v5: bool) -> None:
        self._v5 = v5
        self._buf = bytearray()
        self.epoch = 0

    def feed(self, data: bytes, out: list[Delivery], control: list[tuple[int, bytes]]) -> None:
        """Append complete PUBLISH packets to ``out``, other packets (type, body) to
        ``control``; keeps an incomplete tail for the next call."""
        buf = self._buf
        buf += data
        pos, end, v5, epoch = 0, len(buf), self._v5, self.epoch
        while end - pos >= 2:
            head = buf[pos]
            length, shift, i, complete = 0, 0, pos + 1, False
            while i < end:
                b = buf[i]
                i += 1
                length |= (b & 0x7F) << shift
                if not b & 0x80:
                    complete = True
                    break
                shift += 7
                if shift > 21:
                    raise ProtocolViolation("remaining length over 4 bytes")
            if not complete or i + length > end:
                break  # incomplete: wait for more bytes
            body = bytes(buf[i:i + length])
            pos = i + length
            if head >> 4 == 3:
                out.append(_publish(head, body, v5, epoch))
            else:
                control.append((head >> 4, body))
        del buf[:pos]


def _publish(head: int, body: bytes, v5: bool, epoch: int) -> Delivery:
    qos = (head >> 1) & 3
    tlen = _U16.unpack_from(body)[0]
    p = 2 + tlen
    topic = body[2:p]
    pid = 0
    if qos:
        pid = _U16.unpack_from(body, p)[0]
        p += 2
    if v5:
        plen, shift = 0, 0
        while True:
            b = body[p]
            p += 1
            plen |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        p += plen
    return Delivery(topic, body[p:], pid, bool(head & 0x08), bool(head & 0x01), epoch)
