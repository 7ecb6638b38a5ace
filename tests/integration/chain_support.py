"""The real chain as separate processes, for the rules' end-to-end tests: `facility
simulate`, one `facility gateway` per site gateway and `facility rules`, started as an
operator starts them against the test broker and database, each logging to its own file.

``Chain`` starts a service and waits for the log line that says it is ready (there is
nothing else to wait on from outside), kills one hard (SIGKILL: the broker publishes the
gateway's will) and, on exit, stops every process it started by pid (SIGINT, then SIGKILL
if it lingers) and prints the tail of each log, so that a failure shows what each service
saw. ``poll`` repeats a check until it passes or a deadline expires, with the last answer
in the failure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest

from stack.embedded.lifetime import stop_process

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "stack.cli"]


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Chain:
    tmp_path: Path
    env: Mapping[str, str]
    services: dict[str, Service] = field(default_factory=dict)

    def start(self, name: str, *args: str, ready: str, timeout_s: float = 60.0,
              env: Mapping[str, str] | None = None) -> Service:
        """Start ``facility <args>`` (``env`` on top of the chain's environment) and wait
        until its log contains ``ready``."""
        log = self.tmp_path / f"{name}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([*CLI, *args], cwd=self.tmp_path,
                                    env=dict(self.env) | dict(env or {}),
                                    stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        service = self.services[name] = Service(name, proc, log)

        def started() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with status {proc.returncode} while starting")
            return ready in service.text()

        poll(started, timeout_s, f"{name} ready ({ready!r} in its log)")
        return service

    def kill(self, name: str) -> None:
        """SIGKILL: no goodbye, the broker publishes the will."""
        proc = self.services[name].proc
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for name, service in reversed(list(self.services.items())):
            stop_process(service.proc, name, sig=signal.SIGINT)

    def print_logs(self, lines: int = 60) -> None:
        for service in self.services.values():
            tail = service.text().splitlines()[-lines:]
            print(f"----- {service.name} (exit {service.proc.returncode}) -----")
            print("\n".join(tail))


@contextmanager
def chain(tmp_path: Path, *, database_url: str, mqtt_url: str, mqtt_protocol: str,
          site: Path) -> Iterator[Chain]:
    env = os.environ | {
        "FACILITY_DATABASE_URL": database_url, "FACILITY_MQTT_URL": mqtt_url,
        "FACILITY_MQTT_PROTOCOL": mqtt_protocol, "FACILITY_SITE": str(site),
        "FACILITY_LOG_LEVEL": "INFO", "HOME": str(tmp_path),
    }
    running = Chain(tmp_path, env)
    try:
        yield running
    finally:
        running.stop_all()
        running.print_logs()  # pytest shows it for a failed test only


def poll(check: Callable[[], Any], timeout_s: float, what: str, *,
         interval_s: float = 0.5) -> Any:
    """Repeat ``check`` until it returns something true (an AssertionError counts as not
    yet); fail with the last answer when ``timeout_s`` has passed."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        try:
            last = check()
            if last:
                return last
        except AssertionError as exc:
            last = exc
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {timeout_s:.0f} s (last: {last!r})")
        time.sleep(interval_s)


def query(database_url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        cur = conn.execute(sql, args)
        names = [c.name for c in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
