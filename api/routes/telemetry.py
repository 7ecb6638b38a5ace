"""GET /devices/{name}/telemetry: one point's values over a range, bucketed automatically
(api.telemetry.choose_bucket) unless ``bucket_s`` is given. The range is ``start``/``end``
(aware ISO times) or ``range`` = hour, day or month back from now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel

from api.deps import Conn, CurrentUser
from api.errors import ApiError, NotFound
from api.routes.devices import ID_PATTERN
from api.telemetry import LADDER_S, choose_bucket, read_range

router = APIRouter(tags=["telemetry"])
RANGES = {"hour": timedelta(hours=1), "day": timedelta(days=1), "month": timedelta(days=31)}
MAX_SPAN = timedelta(days=400)


class Sample(BaseModel):
    time: datetime
    avg: float | None
    min: float | None
    max: float | None
    count: int


class Series(BaseModel):
    device: str
    point: str
    unit: str
    start: datetime
    end: datetime
    bucket_s: int
    samples: list[Sample]


@router.get("/devices/{name}/telemetry", response_model=Series,
            responses={400: {"description": "bad range"}, 404: {}})
async def telemetry(
    conn: Conn,
    user: CurrentUser,
    name: Annotated[str, Path(pattern=ID_PATTERN)],
    point: Annotated[str, Query(pattern=r"^[A-Za-z0-9_.-]{1,64}$")],
    range: Literal["hour", "day", "month"] | None = None,
    start: AwareDatetime | None = None,
    end: AwareDatetime | None = None,
    bucket_s: Annotated[int | None, Query(description="0 = raw; else one of the ladder")] = None,
) -> Series:
    now = datetime.now(UTC)
    if range is not None:
        start, end = now - RANGES[range], now
    end = end or now
    try:
        start = start or end - RANGES["hour"]
    except OverflowError:
        raise ApiError("end is too early for a default one-hour range") from None
    if not start < end or end - start > MAX_SPAN:
        raise ApiError(f"start must be before end, and the span at most {MAX_SPAN.days} days")
    if bucket_s is not None and bucket_s != 0 and bucket_s not in LADDER_S:
        raise ApiError(f"bucket_s must be 0 or one of {', '.join(map(str, LADDER_S))}")
    cur = await conn.execute(
        "SELECT p.id, p.unit FROM points p JOIN devices d ON d.id = p.device_id"
        " WHERE d.name = %s AND p.name = %s", (name, point))
    row = await cur.fetchone()
    if row is None:
        raise NotFound("point", f"{name}/{point}")
    size = choose_bucket(start, end) if bucket_s is None else bucket_s
    buckets = await read_range(conn, int(row[0]), start, end, size)
    return Series(device=name, point=point, unit=row[1], start=start, end=end, bucket_s=size,
                  samples=[Sample(time=b.time, avg=b.avg, min=b.min, max=b.max, count=b.count)
                           for b in buckets])
