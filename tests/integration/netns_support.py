"""A simulated building network for integration tests: Linux network namespaces joined by
veth pairs, with private addresses (10.213.x.y) that exist only inside them.

``Lab`` creates namespaces (each with its own loopback up), links two of them with a veth
pair and an address at each end, routes between subnets through a namespace that forwards,
starts processes inside a namespace (``ip netns exec``), and in ``close`` stops those
processes by pid and deletes every namespace (its veth ends go with it), even after a
failure. Names carry the test process id and a counter, so parallel runs never collide.
Every packet stays inside these namespaces: nothing is bridged to the host's network.

``lab_or_skip`` says why a test cannot run (not root, no ``ip``, namespaces refused)."""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

from stack.centre.machines import call_in_namespace
from stack.embedded.lifetime import stop_process

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
_counter = itertools.count(1)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"fprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"cannot create a network namespace: {exc.stderr.decode().strip()}"
    _ip("netns", "del", probe)
    return None


class Netns:
    def __init__(self, name: str) -> None:
        self.name = name

    def argv(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(self, *cmd: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*cmd), capture_output=True, text=True,
                              timeout=timeout_s, check=False)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a thread that has entered this namespace (sockets it makes live
        there); the calling thread stays where it is."""
        return call_in_namespace(self.name, fn)

    def wait_tcp(self, host: str, port: int, timeout_s: float = 20.0) -> bool:
        def probe() -> bool:
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                try:
                    with socket.create_connection((host, port), timeout=1):
                        return True
                except OSError:
                    time.sleep(0.1)
            return False

        return self.call(probe)


class Lab:
    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self.tag = f"f{os.getpid() % 100000}x{next(_counter)}"
        self.namespaces: list[Netns] = []
        self.processes: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._links = 0
        self.interfaces: dict[str, list[str]] = {}  # namespace -> its veth ends

    def namespace(self, role: str) -> Netns:
        ns = Netns(f"{self.tag}-{role}")
        _ip("netns", "add", ns.name)
        self.namespaces.append(ns)
        _ip("-n", ns.name, "link", "set", "lo", "up")
        return ns

    def link(self, a: Netns, a_address: str, b: Netns, b_address: str) -> tuple[str, str]:
        """A veth pair between a and b with these addresses (``10.213.1.1/24``); returns
        the interface names (at a, at b)."""
        self._links += 1
        a_if, b_if = f"{self.tag}a{self._links}"[-15:], f"{self.tag}b{self._links}"[-15:]
        _ip("link", "add", a_if, "netns", a.name, "type", "veth", "peer", "name", b_if,
            "netns", b.name)
        for ns, ifname, address in ((a, a_if, a_address), (b, b_if, b_address)):
            self.interfaces.setdefault(ns.name, []).append(ifname)
            _ip("-n", ns.name, "addr", "add", address, "dev", ifname)
            _ip("-n", ns.name, "link", "set", ifname, "up")
        return a_if, b_if

    def add_address(self, ns: Netns, ifname: str, address: str) -> None:
        _ip("-n", ns.name, "addr", "add", address, "dev", ifname)

    def route(self, ns: Netns, destination: str, via: str) -> None:
        _ip("-n", ns.name, "route", "add", destination, "via", via)

    def forward(self, ns: Netns) -> None:
        r = ns.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
        assert r.returncode == 0, r.stderr

    def spawn(self, ns: Netns, name: str, argv: Sequence[str],
              env: dict[str, str] | None = None) -> Path:
        """Start a process in ``ns``; its output goes to the returned log file."""
        log = self.work_dir / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(ns.argv(*argv), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, env=env)
        self.processes.append((name, proc))
        return log

    def stop(self, name: str) -> None:
        for n, proc in self.processes:
            if n == name:
                stop_process(proc, name, timeout_s=15)

    def close(self) -> None:
        for name, proc in reversed(self.processes):
            stop_process(proc, name, timeout_s=15)
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True, check=False,
                           timeout=20)


def lab_or_skip(work_dir: Path) -> Lab:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    return Lab(work_dir)
