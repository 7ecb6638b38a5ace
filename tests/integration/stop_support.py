"""Stopping services as a service manager does, for the stop tests (issue 17): a private
mosquitto that a test may pause (SIGSTOP: a broker that takes no packets and answers none),
`facility simulate --load N` as load, a QoS 1 recorder of every telemetry message
(a paho client with a persistent session, in a process of its own), and ``stop_timed``:
one signal, the time to exit and the exit status (``facility.runner`` exits non-zero past
its bound)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt import publish

from facility.ports import free_port
from stack.embedded.broker import Broker
from stack.embedded.lifetime import die_with_parent, stop_process
from tests.integration.chain_support import poll

CLI = [sys.executable, "-m", "stack.cli"]
WAIT_STOP_S = 60.0  # the test's own margin; the runner's bound is what is checked
BAD_LINES = ("ERROR", "Traceback", "without a corresponding request", "stop overdue")


@dataclass(frozen=True, slots=True)
class Stopped:
    name: str
    signal: str
    seconds: float
    status: int


def start(name: str, args: list[str], log: Path, env: Mapping[str, str],
          cwd: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen([*CLI, *args], cwd=cwd, env=dict(env), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent)


def wait_log(proc: subprocess.Popen[bytes], log: Path, text: str, timeout_s: float) -> None:
    def seen() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"{log.name}: exited with {proc.returncode} before {text!r}:\n"
                        + log.read_text(errors="replace")[-3000:])
        return text in log.read_text(errors="replace")

    poll(seen, timeout_s, f"{text!r} in {log.name}", interval_s=0.1)


def stop_timed(name: str, proc: subprocess.Popen[bytes], sig: signal.Signals) -> Stopped:
    """Send ``sig`` and wait for the exit; a process still running after WAIT_STOP_S is
    killed and the test fails."""
    started = time.monotonic()
    proc.send_signal(sig)
    try:
        status = proc.wait(WAIT_STOP_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{name} still running {WAIT_STOP_S:.0f} s after {sig.name}")
    return Stopped(name, sig.name, time.monotonic() - started, status)


def bad_lines(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines()
            if any(bad in line for bad in BAD_LINES)]


def report(stops: list[Stopped]) -> str:
    slowest = max(stops, key=lambda s: s.seconds)
    return (f"{len(stops)} stops of {stops[0].name}: slowest {slowest.seconds:.2f} s "
            f"({slowest.signal}), median {sorted(s.seconds for s in stops)[len(stops) // 2]:.2f}"
            f" s; statuses {sorted({s.status for s in stops})}")


@contextmanager
def private_broker(work_dir: Path) -> Iterator[Broker]:
    """A mosquitto of the test's own, so that pausing it disturbs no other test (without
    mosquitto the test fails, BrokerError saying what to install, like every other test)."""
    broker = Broker(work_dir, free_port(), prefer="mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        resume(broker)
        broker.stop()


def pause(broker: Broker) -> None:
    assert broker.process is not None
    os.kill(broker.process.pid, signal.SIGSTOP)


def resume(broker: Broker) -> None:
    if broker.process is not None and broker.process.poll() is None:
        os.kill(broker.process.pid, signal.SIGCONT)


@contextmanager
def load_simulators(tmp_path: Path, devices: int, env: Mapping[str, str],
                    update_period_s: float = 1.0) -> Iterator[Path]:
    """``devices`` Modbus devices (1 s polls in the written site) whose values change every
    ``update_period_s``, so that the gateway publishes all the time; the site file."""
    site = tmp_path / "load-site.yaml"
    log = tmp_path / "simulate.log"
    proc = start("simulate", ["simulate", "--load", str(devices), "--bacnet-panels", "0",
                              "--update-period", str(update_period_s),
                              "--write-site", str(site)], log, env, tmp_path)
    try:
        poll(lambda: site.exists() or proc.poll() is not None, 120, "the load site file")
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        yield site
    finally:
        stop_process(proc, "simulate", sig=signal.SIGINT)


# The recorder: a child process (paho, QoS 1, persistent session: nothing is missed while it
# is busy or the broker is paused), one payload per line, written as it arrives.
RECORDER = r"""
import signal, sys, threading
import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
port, out = int(sys.argv[1]), open(sys.argv[3], "ab", buffering=0)
filters = [(sys.argv[2], 1), ("stop-test/probe", 1)]
stop = threading.Event()
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda *_: stop.set())
c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"stop-recorder-{port}",
                protocol=paho.MQTTv311, clean_session=False)
c.on_connect = lambda c, u, f, rc, p=None: c.subscribe(filters)
c.on_message = lambda c, u, m: out.write(m.payload + b"\n")
c.connect("127.0.0.1", port)
c.loop_start()
stop.wait()
c.disconnect()
c.loop_stop()
"""


@contextmanager
def recorder(tmp_path: Path, port: int, topic: str) -> Iterator[Path]:
    """Every payload on ``topic`` (QoS 1, persistent session), one per line, in a file."""
    out = tmp_path / "recorded.jsonl"
    out.touch()
    proc = subprocess.Popen([sys.executable, "-c", RECORDER, str(port), topic, str(out)],
                            stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
    try:
        def probed() -> bool:
            publish.single("stop-test/probe", b'{"probe":true}', qos=1, hostname="127.0.0.1",
                           port=port)
            return b'"probe"' in out.read_bytes()

        poll(probed, 30, "the recorder subscribed", interval_s=0.3)
        yield out
    finally:
        stop_process(proc, "recorder", sig=signal.SIGINT)


def recorded(out: Path) -> list[dict[str, Any]]:
    rows = []
    for line in out.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            data = json.loads(line)
            if "seq" in data:
                rows.append(data)
    return rows
