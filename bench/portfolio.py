"""A monitoring centre's portfolio for benchmarks and the portfolio browser test: site files of
many estates (10 buildings each: 6 elevators, a pump set, 2 switchgear and a fire panel per
building, the shipped profiles) and a database filled as the services would leave it.

``write_portfolio`` writes one site file per estate (``facility.site.load_site`` reads them;
addresses are private field addresses, never polled here). ``populate`` registers them with
``facility.db.registry.sync_site`` (the services' own code), then writes, with COPY and
set-based SQL rather than through the gateways, what running would have produced: device
statuses (1 % offline), a latest value for every point, a year of closed alarms and orders,
a few active alarms with their fault orders, one open preventive-maintenance order per
building (due over the next month, some late). ``one_point_month`` adds 30 days of 1 s
readings of one point (2.6 M rows) and rolls them up as ingest's job does."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg.types.json import Jsonb

from facility.db.registry import sync_site
from facility.procedures import load_procedures
from facility.site import Site, load_site
from facility.users import ensure_demo_users

log = logging.getLogger(__name__)
_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
PROFILES_DIR = Path(__file__).resolve().parents[1] / "profiles"
ESTATE_NAMES = ("翠湖花园", "锦绣华庭", "金色家园", "阳光新城", "滨江一号", "紫荆苑", "星河湾",
                "枫林绿洲", "世纪广场", "海棠湾")
# (device id suffix, type, profile) of one building: 10 devices
BUILDING_DEVICES = (
    *((f"lift-{k}", "elevator", "elevator") for k in range(1, 7)),
    ("pumps", "pump_set", "pump_set"),
    ("power-1", "switchgear", "switchgear"), ("power-2", "switchgear", "switchgear"),
    ("fire", "fire_panel", "firepanel"),
)
ACTIVE_FAULTS = (  # alarm type, rule, priority, device type, message, procedure, trade
    ("entrapment", "entrapment", "critical", "elevator", "电梯困人 Passengers trapped",
     "elevator_entrapment", "elevator"),
    ("fire_alarm", "fire_alarm", "critical", "fire_panel", "火警 Fire alarm zone 3",
     "fire_alarm_signal", "fire"),
    ("low_pressure", "low_pressure", "high", "pump_set", "供水压力低 Low outlet pressure",
     "water_outage", "plumbing"),
    ("elevator_fault", "elevator_fault", "high", "elevator", "电梯故障 Elevator fault code 5",
     "elevator_fault", "elevator"),
    ("fire_trouble", "fire_trouble", "medium", "fire_panel", "消防故障 Fire panel trouble",
     None, "fire"),
)
# the first elevator of each building carries its monthly maintenance
_FIRST_LIFTS = ("(SELECT DISTINCT ON (site_id, building) * FROM devices WHERE type = 'elevator'"
                " ORDER BY site_id, building, name)")


@dataclass(frozen=True, slots=True)
class Portfolio:
    sites: list[Site]
    devices: int
    buildings: int


def estate_id(i: int) -> str:
    return f"e{i:03d}"


def estate_site(i: int, buildings: int, profiles_dir: Path = PROFILES_DIR) -> dict[str, Any]:
    """The site file (a dict for yaml.safe_dump) of estate ``i``."""
    sid = estate_id(i)
    blocks = []
    for b in range(1, buildings + 1):
        host = f"10.{i // 250}.{i % 250}.{b}"
        devices: list[dict[str, Any]] = []
        for unit, (suffix, dtype, profile) in enumerate(BUILDING_DEVICES, start=1):
            address: dict[str, Any] = (
                {"protocol": "bacnet", "host": host, "port": 47808,
                 "device_instance": i * 1000 + b} if profile == "firepanel"
                else {"protocol": "modbus", "host": host, "port": 502, "unit": unit})
            devices.append({"id": f"{sid}-b{b:02d}-{suffix}", "type": dtype, "profile": profile,
                            "address": address})
        blocks.append({"id": f"b{b:02d}", "name": f"{b}号楼 Block {b}",
                       "gateway": f"gw-{b:02d}", "devices": devices})
    return {"site": sid, "name": f"{ESTATE_NAMES[i % len(ESTATE_NAMES)]} {i:03d}",
            "profiles_dir": str(profiles_dir.resolve()),
            "gateways": [{"id": f"gw-{b:02d}"} for b in range(1, buildings + 1)],
            "buildings": blocks}


def write_portfolio(folder: Path, estates: int, buildings: int = 10) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(1, estates + 1):
        path = folder / f"{estate_id(i)}.yaml"
        path.write_text(yaml.dump(estate_site(i, buildings), Dumper=_DUMPER,
                                  allow_unicode=True, sort_keys=False), encoding="utf-8")
        paths.append(path)
    return paths


def load_portfolio(paths: list[Path]) -> Portfolio:
    sites = [load_site(p) for p in paths]
    return Portfolio(sites, sum(len(s.devices) for s in sites),
                     sum(len(s.config.buildings) for s in sites))


def populate(database_url: str, portfolio: Portfolio, password: str, *,
             active_every: int = 20, seed: int = 7,
             now: datetime | None = None) -> dict[str, float]:
    """Fill the database (see the module docstring); seconds per step."""
    now = now or datetime.now(UTC)
    rng = random.Random(seed)
    timings: dict[str, float] = {}
    with psycopg.connect(database_url) as conn:
        t0 = time.perf_counter()
        for site in portfolio.sites:
            sync_site(conn, site)
        timings["registry_sync_s"] = time.perf_counter() - t0
        ensure_demo_users(conn, password)
        _procedures(conn)
        t0 = time.perf_counter()
        _statuses_and_values(conn, now, rng)
        timings["statuses_values_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        _history(conn, now)
        _active(conn, portfolio, now, active_every)
        _maintenance(conn, now)
        conn.commit()
        conn.execute("ANALYZE")
        timings["alarms_orders_s"] = time.perf_counter() - t0
    return timings


def _procedures(conn: psycopg.Connection) -> None:
    for p in load_procedures(PROFILES_DIR.parent / "procedures").values():
        conn.execute(
            "INSERT INTO procedures (id, title, title_en, trade, priority, body) VALUES"
            " (%s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
            (p.id, p.title, p.title_en, p.trade, p.priority, Jsonb(p.body())))


def _statuses_and_values(conn: psycopg.Connection, now: datetime, rng: random.Random) -> None:
    devices = conn.execute("SELECT id FROM devices ORDER BY id").fetchall()
    with conn.cursor().copy("COPY device_status (device_id, state, reason, time) FROM STDIN") as cp:
        for (dev,) in devices:
            off = rng.random() < 0.01
            cp.write_row((dev, "offline" if off else "online", "timeout after 3 tries" if off
                          else "", now - timedelta(seconds=rng.randint(60, 86400))))
    points = conn.execute("SELECT id, type FROM points ORDER BY id").fetchall()
    with conn.cursor().copy(
            "COPY latest_values (point_id, time, value, value_text, quality) FROM STDIN") as cp:
        for pid, ptype in points:
            value = (0.0 if ptype == "bool" else round(rng.uniform(0, 50), 2)
                     if ptype.startswith("float") else float(rng.randint(0, 2)))
            cp.write_row((pid, now - timedelta(seconds=rng.randint(0, 30)),
                          None if ptype == "string" else value,
                          "ok" if ptype == "string" else None, 0))


_HISTORY = """
WITH d AS (SELECT id, name, site_id, type, row_number() OVER (ORDER BY id) AS n FROM devices),
a AS (
  INSERT INTO alarms (site_id, device_id, source, alarm_type, rule_id, priority, state, active,
                      message, raised_at, acked_at, acked_by, cleared_at, closed_at)
  SELECT d.site_id, d.id, d.name, 'device_offline', 'device_offline', 'medium', 'normal', false,
         '设备离线 Device offline', t, t + interval '2 min', 'operator', t + interval '20 min',
         t + interval '25 min'
  FROM d, generate_series(1, %(per_device)s) g,
       LATERAL (SELECT %(now)s::timestamptz - (g * 131 + d.n * 7) %% 365 * interval '1 day'
                - d.n %% 1440 * interval '1 min' AS t) x
  RETURNING 1)
SELECT count(*) FROM a
"""


def _history(conn: psycopg.Connection, now: datetime) -> None:
    """A year of closed alarms (two per device) and closed maintenance orders (one per building
    and month)."""
    conn.execute(_HISTORY, {"per_device": 2, "now": now})
    conn.execute(
        "INSERT INTO work_orders (site_id, device_id, source, fault, origin, procedure_id, title,"
        " trade, priority, state, assignee, created_at, updated_at, due_at, resolved_at,"
        " closed_at)"
        " SELECT d.site_id, d.id, d.name, 'pm_monthly', 'schedule', NULL,"
        " '月度保养 Monthly maintenance ' || d.building, 'elevator', 'low', 'closed',"
        " 'technician', t, t + interval '3 days', t + interval '14 days', t + interval '3 days',"
        " t + interval '3 days' FROM " + _FIRST_LIFTS + " d, generate_series(1, 12) m,"
        " LATERAL (SELECT %s::timestamptz - m * interval '30 days' AS t) x", (now,))


def _active(conn: psycopg.Connection, portfolio: Portfolio, now: datetime, every: int) -> None:
    """An active alarm in every ``every``-th building (the fault cycles through ACTIVE_FAULTS),
    each with its fault order when the fault has a procedure."""
    k = 0
    for site in portfolio.sites:
        for b in site.config.buildings:
            k += 1
            if k % every:
                continue
            atype, rule, prio, dtype, message, procedure, trade = ACTIVE_FAULTS[
                (k // every) % len(ACTIVE_FAULTS)]
            raised = now - timedelta(minutes=k % 50 + 1)
            row = conn.execute(
                "INSERT INTO alarms (site_id, device_id, source, alarm_type, rule_id, priority,"
                " state, active, message, raised_at) SELECT %s, id, name, %s, %s, %s, 'unack',"
                " true, %s, %s FROM devices WHERE site_id = %s AND building = %s AND type = %s"
                " ORDER BY name DESC LIMIT 1 RETURNING id, device_id, source",
                (site.id, atype, rule, prio, message, raised, site.id, b.id, dtype)).fetchone()
            if row is None or procedure is None:
                continue
            conn.execute(
                "INSERT INTO work_orders (site_id, device_id, source, fault, origin, alarm_id,"
                " procedure_id, title, trade, priority, state, created_at, updated_at)"
                " VALUES (%s, %s, %s, %s, 'alarm', %s, %s, %s, %s, %s, 'open', %s, %s)",
                (site.id, row[1], row[2], atype, row[0], procedure, message, trade, prio,
                 raised, raised))


def _maintenance(conn: psycopg.Connection, now: datetime) -> None:
    """One open monthly maintenance order per building, due over the next 30 days (the first
    few days' already late)."""
    conn.execute(
        "INSERT INTO work_orders (site_id, device_id, source, fault, origin, title, trade,"
        " priority, state, created_at, updated_at, due_at)"
        " SELECT d.site_id, d.id, d.name, 'pm_monthly', 'schedule',"
        " '月度保养 Monthly maintenance ' || d.building, 'elevator', 'low', 'open',"
        " %(now)s::timestamptz - interval '27 days', %(now)s::timestamptz - interval '27 days',"
        " %(now)s::timestamptz + (d.id %% 33 - 3) * interval '1 day' + d.id * interval '1 min'"
        " FROM " + _FIRST_LIFTS + " d", {"now": now})


def one_point_month(database_url: str, point_id: int, now: datetime, days: int = 30) -> int:
    """``days`` of 1 s readings of one point up to ``now`` (COPY through generate_series),
    rolled up into telemetry_1m and telemetry_1h; the rows written."""
    start = (now - timedelta(days=days)).replace(microsecond=0)
    with psycopg.connect(database_url, autocommit=True) as conn:
        for d in range(days + 2):
            conn.execute("SELECT telemetry_ensure_partition(%s::date)",
                         ((start + timedelta(days=d)).date(),))
        cur = conn.execute(
            "INSERT INTO telemetry (time, point_id, value, quality)"
            " SELECT t, %s, 0.45 + 0.05 * sin(extract(epoch FROM t) / 900), 0"
            " FROM generate_series(%s::timestamptz, %s::timestamptz - interval '1 s',"
            " interval '1 s') t", (point_id, start, now.replace(microsecond=0)))
        rows = cur.rowcount
        conn.execute("SELECT telemetry_rollup(date_trunc('minute', %s::timestamptz),"
                     " date_trunc('minute', %s::timestamptz))", (start, now))
        conn.execute("ANALYZE")
    return rows
