"""Loopback ports for servers started by the demo and the tests, never the same port for two
processes of one machine.

A port the OS picks for ``bind(0)`` lies in the ephemeral range
(/proc/sys/net/ipv4/ip_local_port_range, 32768-60999 on Linux), the range outgoing
connections draw their local ports from: between the moment a test writes a port into a
site file and the moment the simulator binds it, any client connection of any process may
take it. So ports come from below the ephemeral range (20000 up), and two processes asking
at once (three pytest-xdist workers, a running demo, a gateway choosing its BACnet port)
must not be handed the same one, by construction rather than by luck.

The range is cut into blocks of ``BLOCK_SIZE`` ports. A process that asks for a port leases
a block by holding an exclusive ``flock`` on the block's lock file
(/tmp/facility-ports/<first port>.lock) for the rest of its life; the kernel drops the lock
when the process dies, however it dies (SIGKILL included), and the block is free for the next
process. A process hands out each port of its blocks once, checked free by a bind (a port may
still be held by a server an earlier leaseholder left behind, or by a program that does not
lease), and takes another block when it runs out. A child process leases its own blocks: a
forked child notices it is not the leaseholder and starts afresh. A port the parent chose for
a child to bind (a simulator's port written into a site file) stays covered by the parent's
lease while the parent lives, which is as long as the child matters to it.

The lease is process-wide state on purpose: a lease belongs to a process, not to an object."""

from __future__ import annotations

import fcntl
import os
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

LOW = 20_000  # well above the fixed ports of the demo site (15021.., 47811..)
BLOCK_SIZE = 32
LOCK_DIR = Path("/tmp/facility-ports")
_EPHEMERAL = Path("/proc/sys/net/ipv4/ip_local_port_range")


class PortsExhausted(RuntimeError):
    """Every block of the range is leased by a live process (or cannot be leased)."""

    def __init__(self, low: int, high: int, lock_dir: Path) -> None:
        super().__init__(f"no free block of ports in {low}-{high - 1}: every block is leased "
                         f"by a live process or its lock file in {lock_dir} cannot be opened")
        self.low, self.high, self.lock_dir = low, high, lock_dir


@dataclass
class PortLease:
    """The blocks one process holds and the ports of them not yet handed out."""

    lock_dir: Path
    low: int
    high: int
    block_size: int = BLOCK_SIZE
    owner: int = field(default_factory=os.getpid)
    _fds: list[int] = field(default_factory=list)
    _left: list[int] = field(default_factory=list)
    _mutex: threading.Lock = field(default_factory=threading.Lock)

    def take(self, kind: int = socket.SOCK_STREAM) -> int:
        """A port of this process's blocks, never handed out before, that binds right now."""
        with self._mutex:
            while True:
                while self._left:
                    port = self._left.pop(0)
                    if _bindable(port, kind):
                        return port
                self._lease_block()

    def _lease_block(self) -> None:
        _make_shared_dir(self.lock_dir)
        starts = list(range(self.low, self.high - self.block_size + 1, self.block_size))
        first = random.randrange(len(starts)) if starts else 0
        for start in starts[first:] + starts[:first]:
            path = self.lock_dir / f"{start}.lock"
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError:
                continue  # a lock file this user may not create or read: not this block
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)  # leased by a live process (or by this one already)
                continue
            self._fds.append(fd)
            self._left.extend(range(start, start + self.block_size))
            return
        raise PortsExhausted(self.low, self.high, self.lock_dir)

    def release(self) -> None:
        """Give the blocks back (the process's end does the same)."""
        with self._mutex:
            for fd in self._fds:
                os.close(fd)
            self._fds.clear()
            self._left.clear()


def _make_shared_dir(path: Path) -> None:
    """The lock directory, writable by every user (sticky, like /tmp) so that a demo run by one
    user and tests run by another share one set of leases."""
    try:
        path.mkdir(parents=True)
    except FileExistsError:
        return
    os.chmod(path, 0o1777)


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # the IANA dynamic range starts at 49152; Linux's default at 32768


class _Holder:
    """The process's lease, made on first use and remade in a forked child."""

    def __init__(self) -> None:
        self.lease: PortLease | None = None

    def current(self) -> PortLease | None:
        high = _ephemeral_low()
        if high - LOW < 10 * BLOCK_SIZE:
            return None  # no room below the ephemeral range on this machine
        if self.lease is None or self.lease.owner != os.getpid():
            # a forked child shares its parent's locks and list: it must not use them
            self.lease = PortLease(LOCK_DIR, LOW, high)
        return self.lease


_HOLDER = _Holder()


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port free right now on 127.0.0.1 (TCP by default, UDP with SOCK_DGRAM) that no other
    process of this machine is handed while this one lives (see the module docstring)."""
    lease = _HOLDER.current()
    if lease is not None:
        return lease.take(kind)
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
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False
