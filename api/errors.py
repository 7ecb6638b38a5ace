"""Domain errors of the API and their one mapping to HTTP: every error answer is JSON
``{"detail": "..."}``, in the language the client asks for with ``Accept-Language`` (zh-CN or
en; English without one), translated by the message catalogue (api.i18n). Database trouble is
503, a value the database refuses is 422; nothing a client sends should end as a 500."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import psycopg
from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import i18n
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


def answer(request: Request, detail: str, status_code: int,
           headers: Mapping[str, str] | None = None, **extra: object) -> JSONResponse:
    """The JSON error answer, its detail in the client's language."""
    lang = i18n.language(request.headers.get("accept-language"))
    catalogues: i18n.Catalogues | None = getattr(request.app.state, "catalogues", None)
    if lang is not None and catalogues is not None:
        detail = catalogues.translate_detail(lang, detail)
    return JSONResponse({"detail": detail, **extra}, status_code=status_code,
                        headers=dict(headers) if headers else None)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if not isinstance(exc.detail, str) or exc.status_code in (204, 304):
        return await http_exception_handler(request, exc)
    return answer(request, exc.detail, exc.status_code, exc.headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return answer(request, exc.detail, exc.status_code)


async def _alarm_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AlarmError)
    if isinstance(exc, AlarmNotFound):
        return answer(request, f"alarm {exc.alarm_id} not found", 404)
    code = 409 if isinstance(exc, AlarmStateError) else 400
    return answer(request, str(exc), code)


async def _work_order_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, WorkOrderError)
    code = 409
    if isinstance(exc, WorkOrderNotFound | StepNotFound):
        code = 404
    elif isinstance(exc, AssigneeRequired):
        code = 422
    return answer(request, str(exc), code)


def _where(loc: Sequence[object]) -> str:
    return ".".join(str(p) for p in loc if p != "body") or "request"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with one readable sentence in ``detail`` and the items in ``errors``."""
    assert isinstance(exc, RequestValidationError)
    items = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
             for e in exc.errors()]
    detail = "; ".join(f"{_where(e['loc'])}: {e['msg']}" for e in items) or "invalid request"
    lang = i18n.language(request.headers.get("accept-language"))
    catalogues: i18n.Catalogues | None = getattr(request.app.state, "catalogues", None)
    if lang is not None and catalogues is not None:  # each part on its own
        detail = "; ".join(f"{_where(e['loc'])}: {catalogues.translate_detail(lang, str(e['msg']))}"
                           for e in items) or catalogues.gettext(lang, "invalid request")
    return JSONResponse({"detail": detail, "errors": items}, status_code=422)


async def _data_error(request: Request, exc: Exception) -> JSONResponse:
    log.info("refused input on %s: %s", request.url.path, exc)
    return answer(request, f"invalid value: {exc}", 422)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.warning("database unavailable on %s: %s", request.url.path, describe(exc))
    return answer(request, "database unavailable, retry shortly", 503,
                  {"Retry-After": str(RETRY_AFTER_S)})


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    """A database error no narrower handler took: 503 when it is an outage (a standby
    answering "read-only" during a failover, the server shutting down), else a 500."""
    if is_outage(exc):
        return await _database_unavailable(request, exc)
    log.error("database error on %s: %s", request.url.path, describe(exc), exc_info=exc)
    return answer(request, "internal error", 500)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(AlarmError, _alarm_error)
    app.add_exception_handler(WorkOrderError, _work_order_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(psycopg.DataError, _data_error)
    app.add_exception_handler(psycopg.OperationalError, _database_error)
    app.add_exception_handler(psycopg.Error, _database_error)
    app.add_exception_handler(PoolTimeout, _database_unavailable)
