"""Simulated machines of a monitoring centre: Linux network namespaces, each with its own
address on a private bridge, for the tests and the benchmarks (root only).

``Centre.create(n, work_dir)`` leases a /24 of 10.215.0.0/16 that no other live Centre on
this host holds (an flock on /run/lock/facility-centre-<y>.lock, released by the kernel when
the holder dies), makes a switch namespace holding a bridge WITHOUT an address (so no packet
ever reaches the host's network), and one namespace per machine ("m1", "m2", ...) joined to
the bridge by a veth pair, with ``/etc/netns/<namespace>/hosts`` naming every machine.

A machine starts processes inside its namespace (optionally as another user through
``setpriv``, or in a UTS namespace of its own with the machine's host name) and records
them. ``kill`` is a machine's loss: its cable is pulled first (the bridge-side end goes
down, so no FIN or RST reaches anyone, as with a power cut), then every pid of
``ip netns pids`` is SIGKILLed until none is left (a postmaster reparented to PID 1 is
found there, not in a process tree). ``revive`` plugs the cable back; ``partition`` and
``heal`` pull and plug it with the processes left running. ``close`` kills everything in
every namespace, deletes namespaces, /etc/netns entries and the lease, even after a failure;
``sweep_stale`` removes what a killed run of this module left behind."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import ipaddress
import itertools
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeVar

from stack.embedded.lifetime import die_with_parent

log = logging.getLogger(__name__)

T = TypeVar("T")
CLONE_NEWNET = 0x40000000
PREFIX = "fc"  # namespace names: fc<pid>n<counter>-<machine>
LEASE_DIR = Path("/run/lock")
SUPERNET = ipaddress.IPv4Network("10.215.0.0/16")
_counter = itertools.count(1)


class MachineError(RuntimeError):
    """A namespace, link or process operation failed (the ip command's message inside)."""


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=False)
    if r.returncode != 0:
        raise MachineError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def skip_reason() -> str | None:
    """Why machines cannot be made here (not root, no ip command), or None."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    return None


def call_in_namespace(namespace: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread that has entered the network namespace ``namespace`` (sockets
    it makes live there); the calling thread stays where it is. ``fn``'s exception, or the
    failure to enter, is raised in the caller."""
    out: list[T] = []
    errors: list[BaseException] = []

    def body() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        with open(f"/run/netns/{namespace}") as f:
            if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                errors.append(OSError(ctypes.get_errno(), "setns failed"))
                return
        try:
            out.append(fn())
        except BaseException as exc:  # handed back to the caller
            errors.append(exc)

    thread = threading.Thread(target=body, name=f"netns-{namespace}")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return out[0]


def namespace_pids(namespace: str) -> list[int]:
    r = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True,
                       timeout=20, check=False)
    return [int(p) for p in r.stdout.split()]


def kill_namespace(namespace: str, timeout_s: float = 10.0) -> None:
    """SIGKILL every process in the namespace until none is left (new ones may be forked
    while we kill)."""
    deadline = time.monotonic() + timeout_s
    while pids := namespace_pids(namespace):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            raise MachineError(f"processes {pids} of {namespace} survive SIGKILL")
        time.sleep(0.02)


@dataclass
class Machine:
    """One simulated machine: a namespace with one address on the centre's bridge."""

    name: str  # host name inside the centre: m1, m2, ...
    namespace: str
    address: str  # 10.215.y.z
    cable: str  # the bridge-side veth end, in the switch namespace
    switch: str  # the switch namespace
    work_dir: Path
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    _logs: list[IO[bytes]] = field(default_factory=list)

    def argv(self, argv: Sequence[str], *, user: str | None = None,
             uts: bool = False) -> list[str]:
        """The command line that runs ``argv`` inside this machine."""
        cmd = list(argv)
        if user is not None:
            cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *cmd]
        if uts:
            cmd = ["unshare", "--uts", "sh", "-c",
                   'echo "$0" > /proc/sys/kernel/hostname && exec "$@"', self.name, *cmd]
        return ["ip", "netns", "exec", self.namespace, *cmd]

    def start(self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None,
              user: str | None = None, uts: bool = False,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start ``argv`` in this machine; output to ``<work_dir>/<machine>-<name>.log``."""
        log_file = open(self.log_path(name), "ab")
        self._logs.append(log_file)
        proc = subprocess.Popen(self.argv(argv, user=user, uts=uts), stdout=log_file,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=dict(env) if env is not None else None, cwd=cwd,
                                preexec_fn=die_with_parent)
        self.processes.append((name, proc))
        log.debug("%s: started %s (pid %d)", self.name, name, proc.pid)
        return proc

    def log_path(self, name: str) -> Path:
        return self.work_dir / f"{self.name}-{name}.log"

    def run(self, argv: Sequence[str], *, user: str | None = None,
            timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a short command in this machine and wait for it."""
        return subprocess.run(self.argv(argv, user=user), capture_output=True, text=True,
                              timeout=timeout_s, check=False)

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in a thread that has entered this machine's network namespace (the
        sockets it opens live there and may be used from any thread afterwards)."""
        return call_in_namespace(self.namespace, fn)

    def pids(self) -> list[int]:
        return namespace_pids(self.namespace)

    def partition(self) -> None:
        """Cut this machine off the others; its processes keep running."""
        _ip("-n", self.switch, "link", "set", self.cable, "down")
        log.info("%s (%s): link cut", self.name, self.address)

    def heal(self) -> None:
        """Plug the cable back in."""
        _ip("-n", self.switch, "link", "set", self.cable, "up")
        log.info("%s (%s): link restored", self.name, self.address)

    def kill(self) -> None:
        """The machine's loss: link cut first (peers hear nothing), then every process of
        the namespace SIGKILLed; the children we started are reaped."""
        self.partition()
        kill_namespace(self.namespace)
        self._reap()
        log.info("%s (%s): every process killed", self.name, self.address)

    def revive(self) -> None:
        """Link up again after ``kill`` (start its engines again yourself)."""
        self.heal()

    def _reap(self) -> None:
        for _name, proc in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self.processes.clear()
        for f in self._logs:
            f.close()
        self._logs.clear()


class Centre:
    """Machines on one private bridge; see the module docstring."""

    def __init__(self, work_dir: Path, subnet: ipaddress.IPv4Network,
                 lease: IO[str]) -> None:
        self.work_dir = work_dir
        self.subnet = subnet
        self.tag = f"{PREFIX}{os.getpid()}n{next(_counter)}"
        self.switch = f"{self.tag}-sw"
        self.machines: list[Machine] = []
        self._lease = lease
        self._hosts = list(subnet.hosts())

    @classmethod
    def create(cls, n: int, work_dir: Path) -> Centre:
        """A centre of ``n`` machines m1..mn on a freshly leased subnet."""
        reason = skip_reason()
        if reason is not None:
            raise MachineError(reason)
        sweep_stale()
        subnet, lease = lease_subnet()
        work_dir.mkdir(parents=True, exist_ok=True)
        centre = cls(work_dir, subnet, lease)
        try:
            _ip("netns", "add", centre.switch)
            _ip("-n", centre.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", centre.switch, "link", "set", "br0", "up")
            for i in range(1, n + 1):
                centre.add_machine(f"m{i}")
        except BaseException:
            centre.close()
            raise
        return centre

    def add_machine(self, name: str) -> Machine:
        """One more machine on the bridge (a client host, or a fourth database node)."""
        index = len(self.machines) + 1
        namespace = f"{self.tag}-{name}"
        address = str(self._hosts[9 + index])  # .11, .12, ...
        cable = f"{self.tag}s{index}"[-15:]
        inner = f"{self.tag}m{index}"[-15:]
        machine = Machine(name, namespace, address, cable, self.switch, self.work_dir)
        _ip("netns", "add", namespace)
        self.machines.append(machine)
        _ip("-n", namespace, "link", "set", "lo", "up")
        _ip("link", "add", inner, "netns", namespace, "type", "veth", "peer", "name", cable,
            "netns", self.switch)
        _ip("-n", namespace, "link", "set", inner, "name", "eth0")
        _ip("-n", namespace, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        _ip("-n", self.switch, "link", "set", cable, "master", "br0")
        _ip("-n", self.switch, "link", "set", cable, "up")
        self._write_hosts()
        return machine

    def machine(self, name: str) -> Machine:
        for m in self.machines:
            if m.name == name:
                return m
        raise KeyError(name)

    def by_address(self, address: str) -> Machine:
        for m in self.machines:
            if m.address == address:
                return m
        raise KeyError(address)

    def _write_hosts(self) -> None:
        lines = "127.0.0.1 localhost\n" + "".join(
            f"{m.address} {m.name}\n" for m in self.machines)
        for m in self.machines:
            folder = Path("/etc/netns") / m.namespace
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts").write_text(lines)

    def close(self) -> None:
        """Kill every process of every machine, delete namespaces, bridge, /etc/netns
        entries and the subnet lease; safe to call twice and after a failed create."""
        errors: list[str] = []
        for m in self.machines:
            try:
                kill_namespace(m.namespace)
            except MachineError as exc:
                errors.append(str(exc))
            m._reap()
        for namespace in [m.namespace for m in self.machines] + [self.switch]:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True,
                           check=False, timeout=20)
            shutil.rmtree(Path("/etc/netns") / namespace, ignore_errors=True)
        self.machines.clear()
        if not self._lease.closed:
            self._lease.close()  # the flock goes with the descriptor
        if errors:
            raise MachineError("; ".join(errors))

    def __enter__(self) -> Centre:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def lease_subnet() -> tuple[ipaddress.IPv4Network, IO[str]]:
    """A /24 of SUPERNET that no other live process holds, with the open lock file that
    holds it (closing it, or dying, releases the lease)."""
    subnets = list(SUPERNET.subnets(new_prefix=24))[1:]
    start = os.getpid() % len(subnets)
    for subnet in subnets[start:] + subnets[:start]:
        lock = open(LEASE_DIR / f"facility-centre-{subnet.network_address}.lock", "w")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        return subnet, lock
    raise MachineError(f"every /24 of {SUPERNET} is leased")


def sweep_stale() -> None:
    """Delete namespaces (and kill their processes) left by runs of this module whose
    process is gone, e.g. a test SIGKILLed before its close ran."""
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False,
                       timeout=20)
    for line in r.stdout.splitlines():
        namespace = line.split()[0] if line.split() else ""
        owner = _owner_pid(namespace)
        if owner is None or Path(f"/proc/{owner}").exists():
            continue
        log.warning("removing namespace %s left by dead process %d", namespace, owner)
        with contextlib.suppress(MachineError):
            kill_namespace(namespace)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False,
                       timeout=20)
        shutil.rmtree(Path("/etc/netns") / namespace, ignore_errors=True)


def _owner_pid(namespace: str) -> int | None:
    if not namespace.startswith(PREFIX):
        return None
    digits = namespace[len(PREFIX):].split("n", 1)[0]
    return int(digits) if digits.isdigit() and "-" in namespace else None
