"""Rules and the API on two machines of a centre (issue 22), in real network namespaces:
machines m1 and m2 each run ``facility rules --standby`` and ``facility api``
(stack/centre/services.py), m3 runs PostgreSQL and mosquitto and the test's steady
publisher (the database's and the broker's own failover have their tests). The machine
of the active rules instance is killed the hard way (link cut, every process SIGKILLed)
while telemetry flows, and an entrapment begins during the takeover: the standby on the
other machine takes the lock within the lock's keepalive bound, the alarm and its work
order are raised once (counted from the outbox events the code wrote), and the surviving
API lists the alarm."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from facility.db.active_lock import LockTiming
from facility.db.migrate import migrate
from facility.users import ensure_demo_users
from stack.centre.description import ServicesSpec
from stack.centre.machines import Centre, Machine, skip_reason
from stack.centre.services import CentreServices, ServiceTargets
from stack.embedded.broker import find_mosquitto
from stack.embedded.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]
PG_PORT, MQTT_PORT, API_PORT = 5432, 1883, 8000  # inside the namespaces only
PASSWORD = "centre services password"
POLL_S = 0.5
TIMING = LockTiming(poll_s=POLL_S, check_s=POLL_S)
HOLDER = ("SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
          "WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE %s")
PUBLISHER = """
import json, os, sys, time, datetime, paho.mqtt.client as mqtt
host, port, topic, flag, out = sys.argv[1:6]
c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="centre-test-pub",
                protocol=mqtt.MQTTv311)
acked = open(out, "a", buffering=1)
sent = {}
def on_publish(client, userdata, mid, rc, props):
    if mid in sent: acked.write(sent.pop(mid) + "\\n")
c.on_publish = on_publish
c.connect(host, int(port), keepalive=5)
c.loop_start()
seq = 0
while True:
    seq += 1
    trapped = os.path.exists(flag)
    now = datetime.datetime.now(datetime.timezone.utc)
    ts = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    points = {"moving": False, "door_zone": not trapped, "door_closed": True, "passengers": 2,
              "alarm_button": False, "car_floor": 7}
    body = json.dumps({"ts": ts, "seq": seq, "session": "s1", "points": points})
    info = c.publish(topic, body, qos=1)
    sent[info.mid] = ts
    time.sleep(0.05)
"""


@dataclass
class Estate:
    centre: Centre
    m3: Machine
    services: CentreServices
    database_url: str
    site_id: str

    def sql(self, query: str, *args: object) -> list[tuple[object, ...]]:
        def run() -> list[tuple[object, ...]]:
            with psycopg.connect(self.database_url, connect_timeout=3) as conn:
                return list(conn.execute(query, args).fetchall())

        return self.m3.call(run)

    def rules_holder(self) -> int | None:
        rows = self.sql(HOLDER, f"lock rules-{self.site_id} pid %")
        return int(str(rows[0][0]).split(" pid ")[1].split()[0]) if rows else None


def write_site(path: Path, site_id: str) -> Path:
    raw = {"site": site_id, "profiles_dir": str(ROOT / "profiles"),
           "gateways": [{"id": "gw-a"}],
           "buildings": [{"id": "a", "gateway": "gw-a", "devices": [
               {"id": f"{site_id}-lift", "type": "elevator", "profile": "elevator",
                "address": {"protocol": "modbus", "port": 15021}}]}],
           "rules": {"entrapment": {"on_delay_s": 1}}}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def start_servers(m3: Machine, work: Path) -> str:
    """PostgreSQL and mosquitto on m3's address; the application database's URL."""
    hba = work / "pg_hba.conf"
    hba.write_text("local all all trust\nhost all all 0.0.0.0/0 trust\n")
    hba.chmod(0o644)
    pg = PostgresServer(work / "pgdata", PG_PORT, settings={
        "listen_addresses": f"127.0.0.1,{m3.address}", "hba_file": str(hba)})
    m3.call(pg.start)  # forked from a thread inside m3: the postmaster lives there
    url = f"postgresql://facility@{m3.address}:{PG_PORT}/postgres"
    m3.call(lambda: migrate(url))
    m3.call(lambda: _users(url))
    mosquitto = find_mosquitto()
    assert mosquitto is not None
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {MQTT_PORT} {m3.address}\nallow_anonymous true\n"
                    f"persistence true\npersistence_location {work}/\nuser root\n")
    m3.start("mosquitto", [mosquitto, "-c", str(conf)])
    return url


def _users(url: str) -> None:
    with psycopg.connect(url) as conn:
        ensure_demo_users(conn, PASSWORD)


@pytest.fixture
def estate(tmp_path: Path, site_id: str) -> Iterator[Estate]:
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    tmp_path.chmod(0o755)  # PostgreSQL runs as postgres and reads its hba file here
    with Centre.create(3, tmp_path / "centre") as centre:
        m3 = centre.machine("m3")
        url = start_servers(m3, tmp_path)
        services = CentreServices(
            centre, ServicesSpec(rules=["m1", "m2"], api=["m1", "m2"], api_port=API_PORT),
            ServiceTargets(site_file=write_site(tmp_path / "site.yaml", site_id),
                           database_url=url, mqtt_url=f"mqtt://{m3.address}:{MQTT_PORT}",
                           lock_poll_s=POLL_S),
            base_env=os.environ)
        services.start()
        yield Estate(centre, m3, services, url, site_id)


def until(check: object, timeout_s: float, what: str) -> float:
    """Poll ``check()`` until true; the seconds it took."""
    assert callable(check)
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(0.1)
    return time.monotonic() - started


def api_alarms(estate: Estate, machine: Machine) -> list[dict[str, object]]:
    async def body() -> list[dict[str, object]]:
        base = f"http://{machine.address}:{API_PORT}"
        async with httpx.AsyncClient(timeout=5) as http:
            r = await http.post(f"{base}/api/v1/auth/token",
                                data={"username": "operator", "password": PASSWORD})
            r.raise_for_status()
            token = r.json()["access_token"]
            r = await http.get(f"{base}/api/v1/alarms", params={"site": estate.site_id},
                               headers={"Authorization": f"Bearer {token}"})
            r.raise_for_status()
            return list(r.json())

    return machine.call(lambda: asyncio.run(body()))


def test_the_active_rules_machine_killed_the_standby_takes_over_once(
    estate: Estate, tmp_path: Path,
) -> None:
    site_id, m3 = estate.site_id, estate.m3
    until(lambda: estate.rules_holder() is not None, 120, "one rules instance active")
    active_pid = estate.rules_holder()
    [active] = [r for r in estate.services.running
                if r.service == "rules" and r.proc.pid == active_pid]
    [survivor] = [m for m in ("m1", "m2") if m != active.machine]
    flag, acked = tmp_path / "trapped", tmp_path / "acked.txt"
    topic = f"facility/v1/{site_id}/gw-a/{site_id}-lift/telemetry"
    m3.start("publisher", [sys.executable, "-c", PUBLISHER, m3.address, str(MQTT_PORT),
                           topic, str(flag), str(acked)])
    log = estate.services.log_path("rules", active.machine)
    until(lambda: "rules subscribed" in log.read_text(errors="replace"), 60,
          "the active rules instance subscribed")
    until(lambda: acked.exists() and len(acked.read_text().splitlines()) > 20, 60,
          "telemetry flowing")
    estate.centre.machine(active.machine).kill()
    flag.touch()  # the entrapment begins while the standby takes over
    took_s = until(lambda: estate.rules_holder() not in (None, active_pid), 60,
                   "the standby holds the lock")
    assert took_s <= TIMING.server_release_s + TIMING.poll_s + TIMING.check_timeout_s + 2
    until(lambda: estate.sql("SELECT 1 FROM work_orders"), 60, "the alarm's work order")
    listed = api_alarms(estate, estate.centre.machine(survivor))
    assert [a["type"] for a in listed if a["source"] == f"{site_id}-lift"] == ["entrapment"]
    counted = {str(k): n for k, n in estate.sql("SELECT kind, count(*) FROM events GROUP BY kind")}
    assert counted.get("alarm.raised") == 1, counted
    assert counted.get("work_order.created") == 1, counted
    assert len(acked.read_text().splitlines()) > 0
