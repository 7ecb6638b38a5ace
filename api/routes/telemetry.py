"""GET /devices/{name}/telemetry: one point's chart series over a range, read through
facility.db.telemetry_query (the one implementation of chart reads): the stored numeric rows
for a span of up to ``RAW_SPAN``, else at most ``MAX_POINTS`` buckets from the ladder, read
from the raw rows, the rollups and the fresh raw tail the rollups do not hold yet, so the
chart's right edge is current. ``bucket_s`` forces a size (0 = raw rows). The range is
``start``/``end`` (aware ISO times) or ``range`` = hour, day or month back from now. This
module only validates the request and shapes the answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from pydantic import AwareDatetime, BaseModel

from api.deps import Conn, CurrentUser
from api.errors import ApiError, NotFound
from api.routes.devices import ID_PATTERN
from api.scoping import check_device
from facility.db import telemetry_query as tq

router = APIRouter(tags=["telemetry"])
RANGES = {"hour": timedelta(hours=1), "day": timedelta(days=1), "month": timedelta(days=31)}
MAX_SPAN = timedelta(days=400)
MAX_POINTS = 300  # what a chart a few hundred pixels wide can show
RAW_SPAN = timedelta(minutes=10)
BUCKETS_S = (0, *(int(b.total_seconds()) for b in tq.BUCKETS))


class Sample(BaseModel):
    time: datetime
    avg: float
    min: float
    max: float
    count: int
    last: float


class Series(BaseModel):
    device: str
    point: str
    unit: str
    start: datetime
    end: datetime
    bucket_s: int
    samples: list[Sample]


def _window(range: str | None, start: datetime | None, end: datetime | None,
            now: datetime) -> tuple[datetime, datetime]:
    if range is not None:
        return now - RANGES[range], now
    end = end or now
    try:
        start = start or end - RANGES["hour"]
    except OverflowError:
        raise ApiError("end is too early for a default one-hour range") from None
    if not start < end or end - start > MAX_SPAN:
        raise ApiError(f"start must be before end, and the span at most {MAX_SPAN.days} days")
    return start, end


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
    start, end = _window(range, start, end, now)
    if bucket_s is not None and bucket_s not in BUCKETS_S:
        raise ApiError(f"bucket_s must be one of {', '.join(map(str, BUCKETS_S))}")
    await check_device(conn, user, name)
    cur = await conn.execute(
        "SELECT p.id, p.unit FROM points p JOIN devices d ON d.id = p.device_id"
        " WHERE d.name = %s AND p.name = %s", (name, point))
    row = await cur.fetchone()
    if row is None:
        raise NotFound("point", f"{name}/{point}")
    bucket = None if bucket_s is None else timedelta(seconds=bucket_s)
    try:
        series = await tq.bucketed(conn, int(row[0]), start, end, max_buckets=MAX_POINTS,
                                   bucket=bucket, raw_span=RAW_SPAN, now=now)
    except tq.QueryError as exc:
        raise ApiError(exc.reason) from exc
    return Series(device=name, point=point, unit=row[1], start=start, end=end,
                  bucket_s=int(series.bucket.total_seconds()),
                  samples=[Sample(time=b.time, avg=b.avg, min=b.min, max=b.max, count=b.count,
                                  last=b.last) for b in series.buckets])
