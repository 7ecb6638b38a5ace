"""Ports for test and demo servers: below the ephemeral range, each handed out once, and never
the same for two processes: several processes leasing at once get disjoint ports, a process
that finds every block leased is told so, a SIGKILLed process's block is leased again, and a
forked child leases its own block instead of sharing its parent's."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from facility.ports import BLOCK_SIZE, LOCK_DIR, LOW, PortLease, _ephemeral_low, free_port

# A child that leases from a private lock directory over a given range, takes ports until
# the range is exhausted, prints them, and holds its lease until its stdin closes.
_CHILD = """
import sys
from pathlib import Path
from facility.ports import PortLease, PortsExhausted
lease = PortLease(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
got = []
try:
    while True:
        got.append(lease.take())
except PortsExhausted:
    pass
print(" ".join(map(str, got)) or "exhausted", flush=True)
sys.stdin.read()
"""


def test_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    ports = [free_port() for _ in range(300)] + [free_port(socket.SOCK_DGRAM) for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(LOW <= p < _ephemeral_low() for p in ports)
    for p in ports[:20]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))  # free: binds


def test_a_port_in_use_is_skipped(tmp_path: Path) -> None:
    block = _fresh_block()
    lease = PortLease(tmp_path, block, block + 4, block_size=4)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", block))  # the first port of the only block
        assert lease.take() == block + 1


def test_processes_leasing_at_once_never_share_a_port_and_a_dead_ones_block_is_reused(
        tmp_path: Path) -> None:
    block = _fresh_block()  # 32 ports no other process is handed; here cut into 8 blocks of 4
    span = (str(block), str(block + BLOCK_SIZE), "4")
    children = [_lessee(tmp_path, span) for _ in range(4)]
    try:
        taken = [_ports(c) for c in children]
        every = [p for ports in taken for p in ports]
        assert len(every) == len(set(every)), taken  # no port handed to two processes
        assert set(every) == set(range(block, block + BLOCK_SIZE))
        late = _lessee(tmp_path, span)
        assert late.stdout is not None and late.stdout.readline().strip() == "exhausted"
        _end(late)
        dead = next(c for c, ports in zip(children, taken, strict=True) if ports)
        dead.send_signal(signal.SIGKILL)
        dead.wait(10)
        heir = _lessee(tmp_path, span)
        children.append(heir)
        assert set(_ports(heir)) == set(taken[children.index(dead)])
    finally:
        for c in children:
            _end(c)


def test_a_forked_child_leases_its_own_block() -> None:
    first = free_port()
    queue: multiprocessing.Queue[int] = multiprocessing.get_context("fork").Queue()
    child = multiprocessing.get_context("fork").Process(target=_child_port, args=(queue,))
    child.start()
    in_child = queue.get(timeout=30)
    child.join(30)
    then = free_port()
    assert in_child not in {first, then}
    assert _block_of(in_child) != _block_of(then)


def _child_port(queue: multiprocessing.Queue[int]) -> None:
    queue.put(free_port())


def _fresh_block() -> int:
    """The first port of a block no process holds, leased by this process for its life."""
    lease = PortLease(LOCK_DIR, LOW, _ephemeral_low())
    first = lease.take()
    _KEEP.append(lease)
    return _block_of(first)


_KEEP: list[PortLease] = []


def _block_of(port: int) -> int:
    return LOW + (port - LOW) // BLOCK_SIZE * BLOCK_SIZE


def _lessee(lock_dir: Path, span: tuple[str, str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(lock_dir), *span],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})


def _ports(child: subprocess.Popen[str]) -> list[int]:
    assert child.stdout is not None
    line = child.stdout.readline().strip()
    return [] if line == "exhausted" else [int(p) for p in line.split()]


def _end(child: subprocess.Popen[str]) -> None:
    if child.poll() is None:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
