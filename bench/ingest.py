"""Ingest benchmark, all in one run on this machine (no arguments; a few minutes at most):

(a) db_only: ingest's write path alone: messages decoded up front by ingest's own
    ``Assembler`` into batches of 10,000 rows, written by ``BatchWriter`` (binary COPY into
    the day partitions, latest_values, rollup marks, one commit per batch);
(b) end_to_end: points per second from a publisher through mosquitto and ingest to
    committed rows. Ingest runs as its own process (``python -m stack.cli ingest``), the
    publisher in this one (a raw-socket MQTT 3.1.1 QoS 1 client with pre-encoded messages,
    so that the load generator costs little); timed from the first publish until ingest's
    Prometheus endpoint says every row is committed; then checked in the database;
(c) naive: one INSERT per point, one commit per message, on a sample of the messages.

Then a tenth of the messages is published again: nothing may be stored twice. RSS is the
peak resident set (VmHWM) of the ingest process. PostgreSQL runs with durable settings
(fsync, synchronous_commit on; max_wal_size 4GB, shared_buffers 512MB). Publisher,
mosquitto, ingest and PostgreSQL share the machine's cores. With BENCH_MQTT_SECURE=1
mosquitto runs as in production (TLS, one login per identity, the ACL:
stack/embedded/secure_broker.py): the publisher logs in as the site's gateway over TLS,
ingest as ingest. Ends with one ``RESULT`` line."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from facility import topics  # noqa: E402
from facility.db import registry  # noqa: E402
from facility.db.migrate import migrate  # noqa: E402
from facility.mqtt_endpoint import MqttEndpoint  # noqa: E402
from facility.mqtt_session import Delivery, connect_packet, varint  # noqa: E402
from facility.ports import free_port  # noqa: E402
from facility.site import Site, load_site  # noqa: E402
from ingest.batch import Assembler, Batch  # noqa: E402
from ingest.batch_writer import BatchWriter  # noqa: E402
from ingest.rows import Catalog  # noqa: E402
from stack.broker_config import gateway_user, ingest_user  # noqa: E402
from stack.embedded.broker import Broker  # noqa: E402
from stack.embedded.postgres import PostgresServer  # noqa: E402
from stack.embedded.secure_broker import SecureBroker, secure_broker  # noqa: E402

SITE, GATEWAY = "bench", "gw-bench"
DEVICES = 100
MESSAGES = int(os.environ.get("BENCH_MESSAGES", "300000"))  # x 12 points
NAIVE_MESSAGES = 3_000
BATCH_ROWS = 10_000
WINDOW = 4_000  # publisher QoS 1 messages in flight
POINTS = 12
# Durable (fsync, synchronous_commit on, full-page writes): the defaults, with the two
# settings any write-heavy PostgreSQL gets (fewer checkpoints, a cache that holds the
# indexes being written). BENCH_PG_DEFAULTS=1 runs with PostgreSQL's stock settings.
PG_SETTINGS = {"max_connections": "50"} | ({} if os.environ.get("BENCH_PG_DEFAULTS") else {
    "max_wal_size": "4GB", "shared_buffers": "512MB"})


def write_site(work: Path) -> Site:
    data = {"site": SITE, "profiles_dir": str(ROOT / "profiles"), "gateways": [{"id": GATEWAY}],
            "buildings": [{"id": "a", "gateway": GATEWAY, "devices": [
                {"id": f"elevator-{k}", "type": "elevator", "profile": "elevator",
                 "address": {"protocol": "modbus", "port": 20000 + k}}
                for k in range(DEVICES)]}]}
    path = work / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_site(path, profiles_dir=ROOT / "profiles")


def build_messages(n: int, offset_s: int) -> list[tuple[bytes, bytes]]:
    """n telemetry messages, round robin over the devices, one second apart per device."""
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    tops = [topics.device_topic(topics.TopicKind.TELEMETRY, SITE, GATEWAY,
                                f"elevator-{k}").encode() for k in range(DEVICES)]
    out = []
    for i in range(n):
        k = offset_s + i // DEVICES
        ts = (base + timedelta(seconds=k)).isoformat().replace("+00:00", "Z")
        points = {"moving": k % 3 != 0, "door_closed": k % 3 != 1, "door_zone": k % 5 == 0,
                  "alarm_button": False, "car_floor": k % 20 - 2, "direction": k % 3,
                  "passengers": k % 9, "load_kg": 75 * (k % 9), "service_mode": 0,
                  "fault_code": 0, "speed_mps": (k % 7) * 0.25, "run_count": 100_000 + k}
        out.append((tops[i % DEVICES], orjson.dumps(
            {"ts": ts, "seq": i + 1, "session": "bench", "points": points})))
    return out


# --- a cheap QoS 1 publisher: MQTT 3.1.1 over a raw socket -------------------------------

def publish(endpoint: MqttEndpoint, msgs: Sequence[tuple[bytes, bytes]]) -> float:
    """Publish with up to WINDOW unacknowledged; seconds until the last PUBACK."""
    raw = socket.create_connection((endpoint.url.host, endpoint.url.port))
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ctx = endpoint.ssl_context()
    s = ctx.wrap_socket(raw, server_hostname=endpoint.url.host) if ctx else raw
    s.sendall(connect_packet("bench-pub", v5=False, keepalive_s=60, receive_maximum=1,
                             clean=True, username=endpoint.username,
                             password=endpoint.password_text()))
    connack = s.recv(4)
    assert connack[:1] == b"\x20" and connack[3:4] == b"\x00", f"refused: {connack!r}"
    t0 = time.perf_counter()
    sent = acked = 0
    pending = b""
    while acked < len(msgs):
        chunk = []
        while sent < len(msgs) and sent - acked < WINDOW:
            t, p = msgs[sent]
            sent += 1
            b = struct.pack(">H", len(t)) + t + struct.pack(">H", sent % 65535 + 1) + p
            chunk.append(b"\x32" + varint(len(b)) + b)
        if chunk:
            s.sendall(b"".join(chunk))
        pending += s.recv(1 << 16)
        k = len(pending) // 4
        acked += k
        pending = pending[k * 4:]
    seconds = time.perf_counter() - t0
    s.close()
    return seconds


# --- phases ------------------------------------------------------------------------------

def new_database(server: PostgresServer, name: str, site: Site) -> tuple[str, Catalog]:
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = server.url(name)
    migrate(url)
    with psycopg.connect(url) as conn:
        registry.sync_site(conn, site)
        return url, Catalog.build(site, registry.load_ids(conn, site.id))


def count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM telemetry").fetchone()
    return int(row[0]) if row else 0


async def db_only(url: str, catalog: Catalog, msgs: Sequence[tuple[bytes, bytes]]) -> float:
    assembler = Assembler(catalog)
    assembler.clock(datetime.now(UTC))
    batches: list[Batch] = [Batch()]
    for t, p in msgs:
        if batches[-1].size >= BATCH_ROWS:
            batches.append(Batch())
        assembler.add(batches[-1], Delivery(t, p, 0, False, False, 0))
    assert assembler.slow_messages == 0, "the workload must take the fast path"
    writer = BatchWriter(url, SITE, lambda d: Batch(), application_name="bench")
    await writer.write(Batch())
    t0 = time.perf_counter()
    for b in batches:
        await writer.write(b)
    seconds = time.perf_counter() - t0
    await writer.close()
    rows = len(msgs) * POINTS
    assert count(url) == rows, "db_only stored a wrong number of rows"
    return rows / seconds


def naive(url: str, catalog: Catalog, msgs: Sequence[tuple[bytes, bytes]]) -> float:
    sql = ("INSERT INTO telemetry (time, point_id, value, value_text, quality)"
           " VALUES (%s, %s, %s, %s, 0) ON CONFLICT (point_id, time) DO NOTHING")
    with psycopg.connect(url) as conn:
        conn.execute("SELECT telemetry_ensure_partition(d::date) FROM generate_series("
                     "now() - interval '2 days', now(), interval '1 day') d")
        conn.commit()
        t0 = time.perf_counter()
        for t, p in msgs:
            device = t.decode().split("/")[4]
            body = orjson.loads(p)
            ts = datetime.fromisoformat(body["ts"])
            with conn.transaction(), conn.cursor() as cur:
                for name, value in body["points"].items():
                    cur.execute(sql, (ts, catalog.point_ids[(device, name)], float(value), None))
        seconds = time.perf_counter() - t0
    assert count(url) == len(msgs) * POINTS
    return len(msgs) * POINTS / seconds


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2)) for m in
            re.finditer(r"^(ingest_\w+?)(?:\{[^}]*\})? (\S+)$", text, re.M)}


def wait_rows(port: int, proc: subprocess.Popen[bytes], rows: float, key: str) -> None:
    deadline = time.monotonic() + 120
    m: dict[str, float] = {}
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ingest exited with {proc.returncode}")
        try:
            m = scrape(port)
            if m.get(key, 0) >= rows:
                return
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"ingest did not store {rows:.0f} rows ({key}) in time: {m}")


def peak_rss_mb(pid: int) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else 0.0


def end_to_end(work: Path, url: str, broker: Broker, secure: SecureBroker | None,
               msgs: Sequence[tuple[bytes, bytes]]) -> tuple[float, int, int, float, float]:
    metrics = free_port()
    env = os.environ | {"PYTHONPATH": str(ROOT)} | (
        secure.env(ingest_user(SITE)) if secure else {})
    endpoint = (secure.endpoint(gateway_user(SITE, GATEWAY)) if secure
                else MqttEndpoint.of(broker.url))
    log = open(work / "ingest.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "stack.cli", "ingest", "--site", str(work / "site.yaml"),
         "--database-url", url, "--mqtt-url", broker.url, "--metrics-port", str(metrics),
         "--batch-rows", str(BATCH_ROWS), "--log-level", "WARNING"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    spy: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                scrape(metrics)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("ingest did not start; see its log") from None
                time.sleep(0.1)
        time.sleep(1.0)  # subscriptions acknowledged (the session is persistent anyway)
        profile = os.environ.get("BENCH_PROFILE")  # e.g. /tmp/ingest.txt: py-spy of ingest
        spy = subprocess.Popen(["py-spy", "record", "-f", "raw", "-o", profile, "-p",
                                str(proc.pid)]) if profile else None
        rows = len(msgs) * POINTS
        t0 = time.perf_counter()
        publish_s = publish(endpoint, msgs)
        wait_rows(metrics, proc, rows, "ingest_rows_written_total")
        seconds = time.perf_counter() - t0
        again = msgs[: len(msgs) // 10]
        publish(endpoint, again)
        wait_rows(metrics, proc, len(again) * POINTS, "ingest_duplicate_rows_total")
        rss = peak_rss_mb(proc.pid)
        m = scrape(metrics)
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        proc.terminate()
        proc.wait(30)
        log.close()
    stored = count(url)
    print(f"  publisher finished in {publish_s:.1f} s; batches {m['ingest_batches_total']:.0f}, "
          f"staged {m['ingest_staged_batches_total']:.0f}, dead letters "
          f"{m['ingest_dead_letters_total']:.0f}")
    return rows / seconds, max(0, rows - stored), max(0, stored - rows), rss, seconds


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    load = os.getloadavg()[0]
    try:
        site = write_site(work)
        print(f"{os.cpu_count()} CPUs, load average {load:.1f}; {MESSAGES} messages x "
              f"{POINTS} points from {DEVICES} elevators; batches of {BATCH_ROWS} rows")
        t0 = time.perf_counter()
        msgs = build_messages(MESSAGES, 0)
        print(f"  built the messages in {time.perf_counter() - t0:.1f} s")
        server = PostgresServer(work / "pgdata", free_port(), settings=PG_SETTINGS)
        server.start()
        secure = (secure_broker(work, [site], free_port())
                  if os.environ.get("BENCH_MQTT_SECURE") == "1" else None)
        broker = secure.broker if secure else Broker(work / "broker", free_port())
        broker.start()
        try:
            url_a, cat_a = new_database(server, "db_only", site)
            db_rate = asyncio.run(db_only(url_a, cat_a, msgs))
            print(f"(a) db_only     {db_rate:>10,.0f} rows/s")
            url_b, _ = new_database(server, "end_to_end", site)
            e2e, lost, dup, rss, seconds = end_to_end(work, url_b, broker, secure, msgs)
            print(f"(b) end_to_end  {e2e:>10,.0f} points/s ({seconds:.1f} s; lost {lost}, "
                  f"duplicated {dup}; ingest peak RSS {rss:.0f} MB)")
            url_c, cat_c = new_database(server, "naive", site)
            naive_rate = naive(url_c, cat_c, msgs[:NAIVE_MESSAGES])
            print(f"(c) naive       {naive_rate:>10,.0f} points/s")
            print(f"end_to_end / db_only = {e2e / db_rate:.0%}; "
                  f"end_to_end / naive = {e2e / naive_rate:.1f}x")
        finally:
            broker.stop()
            server.stop()
        print(f"RESULT end_to_end_points_per_s={e2e:.0f} db_only_rows_per_s={db_rate:.0f} "
              f"naive_points_per_s={naive_rate:.0f} lost={lost} duplicated={dup} "
              f"rss_mb={rss:.0f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
