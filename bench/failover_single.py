"""Today's single-machine set-up for bench/failover.py (not a test): the embedded PostgreSQL
and mosquitto on 127.0.0.1 with one ingest, one rules and one API process. Its "machine" is
killed the hard way (SIGKILL of every server and service process, PostgreSQL's whole
process group) and comes back after the bench's reboot time, as a machine that restarts
would: PostgreSQL recovers from its WAL, mosquitto from its last autosave (messages it had
acknowledged since are gone with it), the services start again."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import psycopg

from facility.db.migrate import migrate
from facility.ports import free_port
from facility.users import ensure_demo_users
from stack.embedded.broker import Broker
from stack.embedded.postgres import PostgresServer

log = logging.getLogger("bench.failover")
ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "stack.cli"]
READY = {"ingest": "ingest subscribed to", "rules": "rules subscribed to",
         "api": "Uvicorn running"}


class SingleMachine:
    name = "single machine"
    mqtt_protocol = "5"

    def __init__(self, work: Path, password: str) -> None:
        self.work = work
        self.password = password
        self.pg = PostgresServer(work / "pgdata", free_port(),
                                 settings={"max_connections": "200"})
        self.broker = Broker(work / "broker", free_port(), prefer="mosquitto")
        self.api_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.site_path: Path | None = None
        self.victims = ["solo"]

    @property
    def database_url(self) -> str:
        return self.pg.url("bench")

    @property
    def mqtt_url(self) -> str:
        return self.broker.url

    @property
    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.api_port}"]

    def endpoint(self, user: str) -> str:
        return self.mqtt_url  # anonymous, as `facility demo`

    def client_env(self, user: str) -> dict[str, str]:
        return {}

    def start(self, site_path: Path) -> None:
        self.site_path = site_path
        self.pg.start()
        with psycopg.connect(self.pg.dsn, autocommit=True) as conn:
            conn.execute('CREATE DATABASE "bench"')
        migrate(self.database_url)
        with psycopg.connect(self.database_url) as conn:
            ensure_demo_users(conn, self.password)
        self.broker.start()
        self._services()

    def _services(self) -> None:
        assert self.site_path is not None
        env = os.environ | {"FACILITY_DATABASE_URL": self.database_url,
                            "FACILITY_MQTT_URL": self.mqtt_url,
                            "FACILITY_SITE": str(self.site_path), "HOME": str(self.work)}
        argv = {"ingest": ["ingest"],
                "rules": ["rules", "--procedures", str(ROOT / "procedures")],
                "api": ["api", "--port", str(self.api_port)]}
        for name, args in argv.items():
            path = self.work / f"{name}.log"
            offset = path.stat().st_size if path.exists() else 0
            with open(path, "ab") as out:
                self.procs[name] = subprocess.Popen([*CLI, *args], cwd=ROOT, env=env,
                                                    stdout=out, stderr=subprocess.STDOUT,
                                                    stdin=subprocess.DEVNULL)
            _wait_line(path, offset, READY[name], self.procs[name])

    def kill(self, victim: str) -> None:
        """Every server and service process of the machine, SIGKILLed."""
        for proc in self.procs.values():
            with suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
        servers = [p for p in (self.broker.process, self.pg.process) if p is not None]
        for server in servers:
            with suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
        for running in [*self.procs.values(), *servers]:
            running.wait(30)
        self.broker.process = self.pg.process = None
        log.info("%s: every process killed", victim)

    def revive(self, victim: str) -> None:
        self.pg.start(timeout_s=120)
        self.broker.start()
        self._services()
        log.info("%s: back", victim)

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            with suppress(subprocess.TimeoutExpired):
                proc.wait(20)
            if proc.poll() is None:
                proc.kill()
        self.broker.stop()
        self.pg.stop()


def _wait_line(path: Path, offset: int, text: str, proc: subprocess.Popen[bytes],
               timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in path.read_bytes()[offset:].decode(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{path.stem} did not start; see {path}")
        time.sleep(0.2)
