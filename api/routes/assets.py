"""The asset ledger (设施设备台账) through the API: GET /assets (everyone signed in: the duty
room needs the contractor's phone in an entrapment), GET /assets/{device} with its history,
PUT /assets/{device} and POST /assets/import (CSV, all or nothing) for managers and admins,
GET /assets/export.csv, GET /assets/inspections-due (the statutory inspections falling due),
and the parts used on a work order (POST by the technician on it, the duty room or an admin).
Every change is in the audit log: asset.update (the fields changed), asset.import (how many),
work_order.part."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from api import assets, audit
from api.assets import AlarmHistory, AssetIn, AssetOut, OrderHistory, PartIn, PartOut
from api.deps import Authoriser, ClientAddress, Config, Conn, CurrentUser, Fieldworker
from api.errors import ApiError, NotFound
from api.scoping import check_device, check_work_order, where
from api.work_order_policy import step_refusal
from facility.users import User

router = APIRouter(tags=["assets"])
Device = Annotated[str, Path(pattern=assets.DEVICE)]
MAX_CSV_BYTES = 1_000_000


class AssetDetail(BaseModel):
    asset: AssetOut | None
    alarms: list[AlarmHistory]
    work_orders: list[OrderHistory]


class DueInspection(BaseModel):
    device: str
    registration_code: str
    contractor: str
    contractor_phone: str
    inspection_due: date
    days_left: int
    overdue: bool


def _known(config: Config) -> set[str] | None:
    return set(config.site.devices) if config.site else None


async def _check_device(conn: Conn, user: User, config: Config, device: str) -> None:
    """The device is registered (or in the API's site file) and in the user's scope."""
    known = _known(config)
    if user.scope.all_sites and known is not None and device in known:
        return
    await check_device(conn, user, device)


@router.get("/assets", response_model=list[AssetOut])
async def list_assets(conn: Conn, user: CurrentUser) -> list[AssetOut]:
    return await assets.list_assets(conn, user.scope)


@router.get("/assets/export.csv", response_class=PlainTextResponse)
async def export_assets(conn: Conn, user: CurrentUser) -> PlainTextResponse:
    return PlainTextResponse(assets.to_csv(await assets.list_assets(conn, user.scope)),
                             media_type="text/csv; charset=utf-8")


@router.get("/assets/inspections-due", response_model=list[DueInspection])
async def inspections_due(
    conn: Conn, user: CurrentUser,
    within_days: Annotated[int, Query(ge=0, le=366)] = 30,
) -> list[DueInspection]:
    """Statutory inspections due within ``within_days`` (and every overdue one), soonest first."""
    today = date.today()
    cond, params = where(user, "d.site_id", "d.building")
    cur = await conn.execute(
        "SELECT device, registration_code, contractor, contractor_phone, inspection_due"
        " FROM device_assets WHERE inspection_due <= %(due)s AND (%(scope_all)s OR device IN"
        " (SELECT d.name FROM devices d WHERE " + cond + ")) ORDER BY inspection_due, device",
        {**params, "due": today + timedelta(days=within_days)})
    return [DueInspection(device=r[0], registration_code=r[1], contractor=r[2],
                          contractor_phone=r[3], inspection_due=r[4],
                          days_left=(r[4] - today).days, overdue=r[4] < today)
            for r in await cur.fetchall()]


@router.get("/assets/{device}", response_model=AssetDetail)
async def get_asset(conn: Conn, user: CurrentUser, config: Config,
                    device: Device) -> AssetDetail:
    """The ledger entry (null if none yet), the device's alarms and work orders (time spent
    from arrival to resolution, parts and their cost), newest first."""
    await _check_device(conn, user, config, device)
    alarms, orders = await assets.history(conn, device)
    return AssetDetail(asset=await assets.get_asset(conn, device), alarms=alarms,
                       work_orders=orders)


@router.put("/assets/{device}", response_model=AssetOut)
async def put_asset(conn: Conn, user: Authoriser, config: Config, device: Device,
                    body: AssetIn, address: ClientAddress) -> AssetOut:
    await _check_device(conn, user, config, device)
    async with conn.transaction():
        before = await assets.get_asset(conn, device)
        await assets.upsert(conn, device, body, user.username)
        await audit.record(conn, actor=user.username, action="asset.update", target=device,
                           address=address,
                           detail={"fields": assets.changed_fields(before, body)})
    found = await assets.get_asset(conn, device)
    assert found is not None
    return found


class ImportResult(BaseModel):
    imported: int
    devices: list[str]


@router.post("/assets/import", response_model=ImportResult,
             responses={422: {"description": "the CSV's problems, line by line"}},
             openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {
                 "type": "string"}}}, "required": True}})
async def import_assets(request: Request, conn: Conn, user: Authoriser, config: Config,
                        address: ClientAddress) -> ImportResult:
    """A ledger CSV (UTF-8, header ``device`` and any of the ledger's fields, dates
    YYYY-MM-DD). Listed devices are replaced whole; one bad line refuses the file."""
    data = await request.body()
    if len(data) > MAX_CSV_BYTES:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
                            f"a ledger CSV is at most {MAX_CSV_BYTES} bytes")
    try:
        rows = assets.parse_csv(data.decode("utf-8"), _known(config))
    except UnicodeDecodeError as exc:
        raise HTTPException(422, "the CSV is not UTF-8 text") from exc
    except assets.CsvProblem as exc:
        raise HTTPException(422, str(exc)) from exc
    for device, _asset in rows:
        await _check_device(conn, user, config, device)
    async with conn.transaction():
        for device, asset in rows:
            await assets.upsert(conn, device, asset, user.username)
        await audit.record(conn, actor=user.username, action="asset.import", target=None,
                           address=address, detail={"devices": [d for d, _ in rows]})
    return ImportResult(imported=len(rows), devices=[d for d, _ in rows])


@router.get("/work-orders/{work_order_id}/parts", response_model=list[PartOut])
async def list_parts(conn: Conn, user: CurrentUser,
                     work_order_id: Annotated[int, Path(ge=1)]) -> list[PartOut]:
    await check_work_order(conn, user, work_order_id)
    return await assets.parts_of(conn, work_order_id)


@router.post("/work-orders/{work_order_id}/parts", response_model=PartOut, status_code=201)
async def add_part(conn: Conn, user: Fieldworker, work_order_id: Annotated[int, Path(ge=1)],
                   body: PartIn, address: ClientAddress) -> PartOut:
    """A part used on the order (quantity, unit cost in CNY): its technician, the duty room."""
    await check_work_order(conn, user, work_order_id)
    cur = await conn.execute("SELECT assignee FROM work_orders WHERE id = %s", (work_order_id,))
    row = await cur.fetchone()
    if row is None:
        raise NotFound("work order", work_order_id)
    reason = step_refusal(user.role, user.username, row[0])
    if reason is not None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, reason)
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO work_order_parts (work_order_id, part, quantity, unit_cost, added_by)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING id",
            (work_order_id, body.part, body.quantity, body.unit_cost, user.username))
        new = await cur.fetchone()
        assert new is not None
        await audit.record(conn, actor=user.username, action="work_order.part",
                           target=str(work_order_id), address=address,
                           detail={"part": body.part, "quantity": str(body.quantity),
                                   "unit_cost": str(body.unit_cost)})
    found = [p for p in await assets.parts_of(conn, work_order_id) if p.id == new[0]]
    if not found:
        raise ApiError("the part was not stored")
    return found[0]
