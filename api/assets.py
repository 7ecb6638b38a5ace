"""The asset ledger (设施设备台账, table ``device_assets``, migration 0012): a device's model,
manufacturer, serial and registration numbers, installation and warranty dates, its
maintenance contractor and the statutory inspection due date; its history (alarms, work
orders with time spent, parts and cost); and the ledger as CSV (``parse_csv``: every line
checked, all or nothing, the errors with their line numbers). SQL and parsing only; the
routes (api.routes.assets) check roles and record the audit log."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import psycopg
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from api.rows import from_row
from facility.scope import Scope
from facility.scope import sql as scope_sql

DEVICE = r"^[a-z0-9_-]{1,64}$"
FIELDS = ("model", "manufacturer", "serial_number", "registration_code", "installed_on",
          "warranty_until", "contractor", "contractor_phone", "inspection_due", "notes")
MAX_CSV_ROWS = 5000


class AssetIn(BaseModel):
    """What a manager writes (PUT replaces every field; a CSV row is one of these)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="", max_length=100)
    manufacturer: str = Field(default="", max_length=100)
    serial_number: str = Field(default="", max_length=100)
    registration_code: str = Field(default="", max_length=64,
                                   description="an elevator's 注册代码 (registration code)")
    installed_on: date | None = None
    warranty_until: date | None = None
    contractor: str = Field(default="", max_length=200, description="maintenance contractor")
    contractor_phone: str = Field(default="", max_length=40)
    inspection_due: date | None = Field(default=None,
                                        description="statutory inspection (定期检验) due")
    notes: str = Field(default="", max_length=2000)


class AssetOut(AssetIn):
    model_config = ConfigDict(extra="ignore")

    device: str
    updated_at: datetime | None
    updated_by: str | None


class CsvProblem(ValueError):
    """The CSV was refused: ``problems`` are "line N: what is wrong"."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems[:20]))


_SELECT = ("SELECT device, updated_at, updated_by, " + ", ".join(FIELDS)
           + " FROM device_assets")


def _out(row: tuple[Any, ...]) -> AssetOut:
    names = ("device", "updated_at", "updated_by", *FIELDS)
    return AssetOut.model_validate(dict(zip(names, row, strict=True)))


async def list_assets(conn: psycopg.AsyncConnection[Any], scope: Scope) -> list[AssetOut]:
    """The ledger of the devices in ``scope`` (entries of devices not yet registered: only
    for a scope of every site)."""
    cur = await conn.execute(
        _SELECT + " WHERE %(scope_all)s OR device IN (SELECT d.name FROM devices d WHERE "
        + scope_sql("d.site_id", "d.building") + ") ORDER BY device", scope.params())
    return [_out(r) for r in await cur.fetchall()]


async def get_asset(conn: psycopg.AsyncConnection[Any], device: str) -> AssetOut | None:
    cur = await conn.execute(_SELECT + " WHERE device = %s", (device,))
    row = await cur.fetchone()
    return None if row is None else _out(row)


async def upsert(conn: psycopg.AsyncConnection[Any], device: str, asset: AssetIn,
                 actor: str) -> None:
    values = asset.model_dump()
    cols = ", ".join(FIELDS)
    marks = ", ".join(f"%({f})s" for f in FIELDS)
    sets = ", ".join(f"{f} = EXCLUDED.{f}" for f in FIELDS)
    await conn.execute(
        f"INSERT INTO device_assets (device, {cols}, updated_at, updated_by)"
        f" VALUES (%(device)s, {marks}, now(), %(actor)s) ON CONFLICT (device) DO UPDATE"
        f" SET {sets}, updated_at = now(), updated_by = EXCLUDED.updated_by",
        {**values, "device": device, "actor": actor})


def changed_fields(before: AssetOut | None, after: AssetIn) -> list[str]:
    if before is None:
        return [f for f in FIELDS if getattr(after, f) not in ("", None)]
    return [f for f in FIELDS if getattr(before, f) != getattr(after, f)]


def parse_csv(text: str, known_devices: set[str] | None) -> list[tuple[str, AssetIn]]:
    """Rows of a ledger CSV (header: ``device`` and any of FIELDS; dates YYYY-MM-DD). A device
    not in ``known_devices`` (when given), a repeated device, an unknown column or a bad value
    refuses the whole file."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = reader.fieldnames or []
    problems: list[str] = []
    if "device" not in header:
        raise CsvProblem(["line 1: the header has no 'device' column"])
    unknown = [h for h in header if h != "device" and h not in FIELDS]
    if unknown:
        raise CsvProblem([f"line 1: unknown columns {', '.join(unknown)} (known: device, "
                          f"{', '.join(FIELDS)})"])
    rows: list[tuple[str, AssetIn]] = []
    seen: set[str] = set()
    for n, raw in enumerate(reader, start=2):
        if len(rows) >= MAX_CSV_ROWS:
            raise CsvProblem([f"line {n}: more than {MAX_CSV_ROWS} rows"])
        device = (raw.get("device") or "").strip()
        if not device or (known_devices is not None and device not in known_devices):
            problems.append(f"line {n}: device {device!r} is not a device of the site")
            continue
        if device in seen:
            problems.append(f"line {n}: device {device} appears twice")
            continue
        seen.add(device)
        values = {k: (v or "").strip() for k, v in raw.items() if k != "device" and k}
        values = {k: (None if v == "" and k in _DATES else v) for k, v in values.items()}
        try:
            rows.append((device, AssetIn.model_validate(values)))
        except ValidationError as exc:
            for e in exc.errors():
                where = ".".join(str(p) for p in e["loc"])
                problems.append(f"line {n}: {where}: {e['msg']}")
    if problems:
        raise CsvProblem(problems)
    return rows


_DATES = frozenset({"installed_on", "warranty_until", "inspection_due"})


def to_csv(assets: list[AssetOut]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["device", *FIELDS])
    for a in assets:
        writer.writerow([a.device, *("" if getattr(a, f) is None else getattr(a, f)
                                     for f in FIELDS)])
    return out.getvalue()


class PartIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    part: str = Field(min_length=1, max_length=200)
    quantity: Decimal = Field(gt=0, le=100000, decimal_places=2)
    unit_cost: Decimal = Field(ge=0, le=10_000_000, decimal_places=2, description="CNY")


class PartOut(PartIn):
    id: int
    work_order_id: int
    added_by: str
    added_at: datetime


class OrderHistory(BaseModel):
    id: int
    title: str
    fault: str
    origin: str
    state: str
    created_at: datetime
    resolved_at: datetime | None
    time_spent_s: float | None = Field(description="from arrival (or acceptance) to resolved")
    parts_cost: Decimal
    parts: list[str]


class AlarmHistory(BaseModel):
    id: int
    alarm_type: str
    priority: str
    message: str
    raised_at: datetime
    cleared_at: datetime | None
    work_order_id: int | None


async def parts_of(conn: psycopg.AsyncConnection[Any], order_id: int) -> list[PartOut]:
    cur = await conn.execute(
        "SELECT part, quantity, unit_cost, id, work_order_id, added_by, added_at"
        " FROM work_order_parts WHERE work_order_id = %s ORDER BY id", (order_id,))
    return [from_row(PartOut, r) for r in await cur.fetchall()]


_ORDER_HISTORY = """
SELECT w.id, w.title, w.fault, w.origin, w.state, w.created_at, w.resolved_at,
  extract(epoch FROM w.resolved_at - coalesce(
    (SELECT min(time) FROM work_order_events e WHERE e.work_order_id = w.id
     AND e.event = 'arrived'),
    (SELECT min(time) FROM work_order_events e WHERE e.work_order_id = w.id
     AND e.event = 'accepted'))),
  coalesce((SELECT sum(quantity * unit_cost) FROM work_order_parts p
            WHERE p.work_order_id = w.id), 0),
  coalesce((SELECT array_agg(part || ' x' || quantity::text ORDER BY id) FROM work_order_parts p
            WHERE p.work_order_id = w.id), '{}')
FROM work_orders w WHERE w.source = %s ORDER BY w.created_at DESC LIMIT %s
"""


async def history(conn: psycopg.AsyncConnection[Any], device: str,
                  limit: int = 100) -> tuple[list[AlarmHistory], list[OrderHistory]]:
    cur = await conn.execute(
        "SELECT id, alarm_type, priority, message, raised_at, cleared_at, work_order_id"
        " FROM alarms WHERE source = %s ORDER BY raised_at DESC LIMIT %s", (device, limit))
    alarms = [from_row(AlarmHistory, r) for r in await cur.fetchall()]
    cur = await conn.execute(_ORDER_HISTORY, (device, limit))
    orders = [from_row(OrderHistory, r) for r in await cur.fetchall()]
    return alarms, orders
