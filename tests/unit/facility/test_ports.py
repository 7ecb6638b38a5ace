"""Free ports for test and demo servers: below the ephemeral range, never handed out twice
by one process, and really free (one a socket holds is skipped)."""

from __future__ import annotations

import socket

from facility.ports import _CURSOR, _ephemeral_low, free_port


def test_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(300)] + [free_port(socket.SOCK_DGRAM) for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(20_000 <= p < _ephemeral_low() for p in ports)
    for p in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))  # free: binds


def test_a_port_in_use_is_skipped() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", _CURSOR.next))  # the port the cursor would give next
        got = free_port()
        assert got != busy.getsockname()[1]
