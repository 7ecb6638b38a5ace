"""Domain errors of the API and their one mapping to HTTP: every error answer is JSON
``{"detail": "..."}``. Database trouble is 503, a value the database refuses is 422; nothing a
client sends should end as a 500."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from facility.alarm_store import AlarmError, AlarmNotFound, AlarmStateError
from facility.db.outage import describe, is_outage
from facility.workorders import (
    AssigneeRequired,
    StepNotFound,
    WorkOrderError,
    WorkOrderNotFound,
)

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5  # a Patroni failover takes about 20 s; clients poll again after this


class ApiError(Exception):
    status_code = 400

    def __init__(self, detail: str) -> None:
        self.detail = detail
        super().__init__(detail)


class NotFound(ApiError):
    status_code = 404

    def __init__(self, kind: str, key: object) -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key} not found")


class Conflict(ApiError):
    status_code = 409


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)


async def _alarm_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AlarmError)
    if isinstance(exc, AlarmNotFound):
        return JSONResponse({"detail": f"alarm {exc.alarm_id} not found"}, status_code=404)
    code = 409 if isinstance(exc, AlarmStateError) else 400
    return JSONResponse({"detail": str(exc)}, status_code=code)


async def _work_order_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WorkOrderError)
    code = 409
    if isinstance(exc, WorkOrderNotFound | StepNotFound):
        code = 404
    elif isinstance(exc, AssigneeRequired):
        code = 422
    return JSONResponse({"detail": str(exc)}, status_code=code)


def _where(loc: Sequence[object]) -> str:
    return ".".join(str(p) for p in loc if p != "body") or "request"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with one readable sentence in ``detail`` and the items in ``errors``."""
    assert isinstance(exc, RequestValidationError)
    items = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
             for e in exc.errors()]
    detail = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in items) or "invalid request"
    return JSONResponse({"detail": detail, "errors": items}, status_code=422)


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    log.info("refused input on %s: %s", request.url.path, exc)
    return JSONResponse({"detail": f"invalid value: {exc}"}, status_code=422)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable on %s: %s", request.url.path, describe(exc))
    return JSONResponse({"detail": "database unavailable, retry shortly"}, status_code=503,
                        headers={"Retry-After": str(RETRY_AFTER_S)})


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """A database error no narrower handler took: 503 when it is an outage (a standby
    answering "read-only" during a failover, the server shutting down), else a 500."""
    if is_outage(exc):
        return await _database_unavailable(request, exc)
    log.error("database error on %s: %s", request.url.path, describe(exc), exc_info=exc)
    return JSONResponse({"detail": "internal error"}, status_code=500)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(AlarmError, _alarm_error)
    app.add_exception_handler(WorkOrderError, _work_order_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(psycopg.DataError, _data_error)
    app.add_exception_handler(psycopg.OperationalError, _database_error)
    app.add_exception_handler(psycopg.Error, _database_error)
    app.add_exception_handler(PoolTimeout, _database_unavailable)
