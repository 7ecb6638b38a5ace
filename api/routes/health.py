"""GET /health: liveness and database reachability, without authentication."""

from __future__ import annotations

import asyncio
import logging

import psycopg
from fastapi import APIRouter
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from api.deps import Pool

log = logging.getLogger(__name__)
router = APIRouter(tags=["health"])
DB_CHECK_TIMEOUT_S = 2.0


@router.get("/health", responses={503: {"description": "database unreachable"}})
async def health(pool: Pool) -> JSONResponse:
    try:
        async with asyncio.timeout(DB_CHECK_TIMEOUT_S):
            async with pool.connection(timeout=DB_CHECK_TIMEOUT_S) as conn:
                await conn.execute("SELECT 1")
    except (psycopg.Error, PoolTimeout, TimeoutError) as exc:
        log.warning("health: database unreachable: %s", exc)
        return JSONResponse({"status": "degraded", "database": "unavailable"}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})
