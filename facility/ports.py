"""Free loopback ports for servers started by the demo and the tests.

A port the OS picks for ``bind(0)`` lies in the ephemeral range
(/proc/sys/net/ipv4/ip_local_port_range, 32768-60999 on Linux), the range outgoing
connections draw their local ports from: between the moment a test writes a port into a
site file and the moment the simulator binds it, any client connection of any process
(a service connecting to PostgreSQL, say) may take it ("cannot listen on 127.0.0.1:52515").
So ``free_port`` hands out ports below the ephemeral range instead, each checked free by a
bind, walking a process-wide cursor from a random start so that one process never hands out
the same port twice (until it has gone round the whole range) and two processes rarely meet.
Where no such range exists it falls back to the OS's choice."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_LOW = 20_000  # well above the fixed ports of the demo site (15021.., 47811..)
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


class _Cursor:
    """Where the next search starts; process-wide on purpose (see the module docstring)."""

    def __init__(self) -> None:
        self.low, self.high = _LOW, _ephemeral_low()
        self.next = random.randrange(self.low, self.high) if self.high > self.low else 0

    def take(self) -> int:
        port = self.next
        self.next = self.low + (port + 1 - self.low) % (self.high - self.low)
        return port


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # the IANA dynamic range starts at 49152; Linux's default at 32768


_CURSOR = _Cursor()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free right now on 127.0.0.1 (TCP by default, UDP with SOCK_DGRAM), below the
    ephemeral range where possible."""
    if _CURSOR.high - _CURSOR.low >= 1000:
        for _ in range(500):
            port = _CURSOR.take()
            if _bindable(port, kind):
                return port
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bindable(port: int, kind: int) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_tcp(host: str, port: int, timeout_s: float) -> bool:
    """True once something accepts connections on host:port, False after timeout_s."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
