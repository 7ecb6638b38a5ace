"""`facility demo`: the whole platform on one machine with embedded defaults.

Starts a private PostgreSQL (unless FACILITY_DATABASE_URL is set) and mosquitto (unless
FACILITY_MQTT_URL is set) secure as in production: a TLS listener with a CA and server
certificate made in ``.facility/tls`` on the first run, one login per service and gateway
(``.facility/broker/auth``, from ``facility broker-config``'s code) and the ACL; each child
gets its own user name, password file and the CA in its environment. It applies
migrations, creates the demo users, then runs the simulators, one gateway per site gateway,
ingest, rules and the API as child processes. A child that dies is restarted after a pause.
Ctrl-C (or SIGTERM) stops every service at once by pid (each within its own bound,
``facility.runner``), then the simulators, then the broker and the database: no orphan, no
stale lock, a second run works."""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from facility.db.migrate import migrate
from facility.ports import free_port
from facility.runner import STOP_BOUND_S, WATCHDOG_GRACE_S
from facility.settings import CommonSettings
from facility.site import Site, load_site
from stack.broker_config import gateway_user, ingest_user, rules_user
from stack.embedded.broker import require_mosquitto
from stack.embedded.lifetime import die_with_parent, stop_processes
from stack.embedded.postgres import PostgresServer
from stack.embedded.secure_broker import secure_broker

log = logging.getLogger(__name__)
RESTART_PAUSE_S = 3.0
# a child's own bound (facility.runner.STOP_BOUND_S) and its watchdog's grace, with margin
STOP_DEADLINE_S = STOP_BOUND_S + WATCHDOG_GRACE_S + 2.0


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # on top of the demo's environment
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = field(default=0.0)

    def start(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            self.argv, env=env | self.env, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.started_at = time.monotonic()
        log.info("started %s (pid %d)", self.name, self.process.pid)


class _Stop(Exception):
    pass


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def run_demo(args: argparse.Namespace, settings: CommonSettings) -> int:
    site_path = settings.site.resolve()
    site = load_site(site_path)
    scenario_path = args.scenario.resolve() if args.scenario else None
    if scenario_path:  # refuse a bad scenario before starting anything
        from simulators.scenario import load_scenario

        load_scenario(scenario_path, site)
    state_dir: Path = args.state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    children: list[Child] = []
    try:
        with ExitStack() as stack:
            database_url = settings.database_url or _embedded_database(state_dir, stack)
            migrate(database_url)
            mqtt_url, protocol, logins = _broker(settings, site, state_dir, stack,
                                                 args.broker)
            password = os.environ.get("FACILITY_DEMO_PASSWORD") or secrets.token_urlsafe(9)
            _demo_users(database_url, password)
            env = os.environ | {
                "FACILITY_DATABASE_URL": database_url, "FACILITY_MQTT_URL": mqtt_url,
                "FACILITY_MQTT_PROTOCOL": protocol, "FACILITY_SITE": str(site_path),
                "FACILITY_LOG_LEVEL": settings.log_level,
            }
            children = _children(site, scenario_path, args)
            for child in children:
                child.env |= logins.get(child.name, {})
            for child in children:
                child.start(env)
            stack.callback(_stop_all, children)
            stack.callback(_ignore_signals)  # runs first: a second Ctrl-C cannot cut cleanup
            url = f"http://{args.host}:{args.port}"
            if not _wait_http(f"{url}/api/v1/health", 90.0, children):
                log.error("the API did not answer on %s within 90 s", url)
                return 1
            _banner(url, password, database_url, mqtt_url, settings)
            _supervise(children, env)
    except _Stop as stop:
        log.info("received %s: stopping the demo", stop)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    return 0


def _embedded_database(state_dir: Path, stack: ExitStack) -> str:
    server = PostgresServer(state_dir / "pgdata", free_port())
    server.start()
    stack.callback(server.stop)
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = 'facility'").fetchone()
        if not exists:
            conn.execute("CREATE DATABASE facility")
    return server.url("facility")


def _broker(settings: CommonSettings, site: Site, state_dir: Path, stack: ExitStack,
            prefer: str) -> tuple[str, str, dict[str, dict[str, str]]]:
    """The broker's URL and protocol, and each child's login (by child name): none for a
    broker of the operator's (FACILITY_MQTT_URL: the environment's login is everyone's)."""
    if "mqtt_url" in settings.model_fields_set:
        return settings.mqtt_url, settings.mqtt_protocol, {}
    require_mosquitto(prefer)
    secure = secure_broker(state_dir, [site], free_port())
    secure.broker.start()
    stack.callback(secure.broker.stop)
    users = {f"gateway[{g.id}]": gateway_user(site.id, g.id) for g in site.config.gateways}
    users |= {"ingest": ingest_user(site.id), "rules": rules_user(site.id)}
    return secure.broker.url, "5", {child: secure.env(u) for child, u in users.items()}


def _demo_users(database_url: str, password: str) -> None:
    from facility.users import ensure_demo_users

    with psycopg.connect(database_url) as conn:
        ensure_demo_users(conn, password)


def _children(site: object, scenario: Path | None, args: argparse.Namespace) -> list[Child]:
    from facility.site import Site

    assert isinstance(site, Site)
    cli = [sys.executable, "-m", "stack.cli"]
    simulate = [*cli, "simulate"] + (["--scenario", str(scenario)] if scenario else [])
    children = [Child("simulate", simulate)]
    state_dir = str(args.state_dir.resolve())  # each demo its own store-and-forward queues
    children += [Child(f"gateway[{g.id}]", [*cli, "gateway", "--gateway", g.id,
                                            "--state-dir", state_dir])
                 for g in site.config.gateways]
    procedures = Path(__file__).resolve().parent.parent / "procedures"
    children += [
        Child("ingest", [*cli, "ingest"]),
        Child("rules", [*cli, "rules", "--procedures", str(procedures)]),
        Child("api", [*cli, "api", "--host", args.host, "--port", str(args.port)]),
    ]
    return children


def _wait_http(url: str, timeout_s: float, children: list[Child]) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except OSError:
            pass
        api = children[-1].process
        if api is not None and api.poll() is not None:
            return False
        time.sleep(0.3)
    return False


def _banner(url: str, password: str, database_url: str, mqtt_url: str,
            settings: CommonSettings) -> None:
    embedded_db = "" if settings.database_url else " (embedded, .facility/pgdata)"
    lines = [
        "",
        "Facility demo is running.",
        f"  Dashboard:  {url}",
        "  Users:      operator, technician, manager, admin; on-call technicians",
        "              tech-elevator-1, tech-electrical-1, tech-plumbing-1, tech-fire-1",
        f"  Password:   {password}",
        f"  Database:   {database_url}{embedded_db}",
        f"  Broker:     {mqtt_url}"
        + ("" if "mqtt_url" in settings.model_fields_set else
           " (TLS, one login per service: .facility/broker/auth, CA .facility/tls/ca.crt)"),
        "Press Ctrl-C to stop.",
        "",
    ]
    print("\n".join(lines), flush=True)


def _supervise(children: list[Child], env: dict[str, str]) -> None:
    """Restart a child that died, after a pause; runs until a signal raises _Stop."""
    while True:
        time.sleep(0.5)
        for child in children:
            proc = child.process
            if proc is None or proc.poll() is None:
                continue
            log.error("%s exited with status %s; restarting in %.0f s", child.name,
                      proc.returncode, RESTART_PAUSE_S)
            time.sleep(RESTART_PAUSE_S)
            child.restarts += 1
            child.start(env)


def _ignore_signals() -> None:
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, signal.SIG_IGN)


def _stop_all(children: list[Child]) -> None:
    """Stop the services at once (each within its bound), then the simulators they poll;
    whatever lingers past the deadline is killed."""
    services = [c for c in children if c.name != "simulate"]
    for wave in (services, [c for c in children if c.name == "simulate"]):
        procs = [(c.name, c.process) for c in wave]
        for child in wave:
            child.process = None
        stop_processes(procs, timeout_s=STOP_DEADLINE_S)
    log.info("every service stopped")
