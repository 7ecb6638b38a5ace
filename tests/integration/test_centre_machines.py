"""The simulated machines of a centre (stack/centre/machines.py), in real network
namespaces: machines reach each other over the bridge; a kill leaves no process and no
route to the machine; a partition cuts the link with the processes left running and heal
restores it; close leaves no namespace, bridge, veth or /etc/netns entry; two centres at
once get different subnets."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stack.centre.machines import Centre, Machine, skip_reason

PORT = 7000  # inside the namespaces only: nothing else listens there


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[Centre]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with Centre.create(3, tmp_path) as made:
        yield made


def reaches(source: Machine, target: Machine, timeout_s: float = 1.0) -> bool:
    def probe() -> bool:
        try:
            with socket.create_connection((target.address, PORT), timeout=timeout_s) as s:
                return s.recv(16) == b"hello"
        except OSError:
            return False

    return source.call(probe)


def serve(machine: Machine) -> subprocess.Popen[bytes]:
    """A server that says hello to every connection, with a child of its own (so that a
    kill must find more than the process we started)."""
    code = (
        "import socket, subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"s = socket.create_server(('{machine.address}', {PORT}))\n"
        "while True:\n"
        "    c, _ = s.accept(); c.sendall(b'hello'); c.close()\n")
    return machine.start("hello", [sys.executable, "-c", code])


def wait_for(probe: Callable[[], object], timeout_s: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(0.05)
    return False


def wait_reaches(source: Machine, target: Machine, timeout_s: float = 20.0) -> bool:
    return wait_for(lambda: reaches(source, target, timeout_s=0.2), timeout_s)


def test_machines_reach_each_other_and_a_kill_leaves_nothing(centre: Centre) -> None:
    m1, m2, m3 = centre.machines
    serve(m2)
    serve(m3)
    assert wait_reaches(m1, m2) and wait_reaches(m1, m3)
    assert len(m2.pids()) >= 2  # the server and its child
    assert m1.run(["cat", "/etc/hosts"]).stdout.count(" m") == 3

    m2.kill()
    assert m2.pids() == []
    assert not reaches(m1, m2)
    assert reaches(m1, m3)  # the others go on


def test_partition_keeps_processes_and_heal_restores_the_link(centre: Centre) -> None:
    m1, _m2, m3 = centre.machines
    proc = serve(m3)
    assert wait_reaches(m1, m3)
    m3.partition()
    assert not reaches(m1, m3)
    assert proc.poll() is None and m3.pids()
    m3.heal()
    assert wait_reaches(m1, m3)


def test_close_removes_everything_and_subnets_never_collide(tmp_path: Path) -> None:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    first = Centre.create(2, tmp_path / "a")
    second = Centre.create(1, tmp_path / "b")
    try:
        assert first.subnet != second.subnet
        serve(first.machines[0])
        # `ip netns exec` enters the namespace after Popen returns: wait for it to be there
        assert wait_for(first.machines[0].pids)
    finally:
        names = [m.namespace for c in (first, second) for m in c.machines]
        names += [first.switch, second.switch]
        first.close()
        second.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                            check=True).stdout
    assert not [n for n in names if n in listed]
    assert not [n for n in names if (Path("/etc/netns") / n).exists()]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True,
                           check=True).stdout
    assert first.tag not in links and second.tag not in links
