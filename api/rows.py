"""SQL rows into response models: a row whose columns come in the order of the model's
fields becomes that model (``from_row``); ``fetch_one`` reads the one row a query finds or
raises NotFound (kind, key). No SQL of its own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, LiteralString, TypeVar

import psycopg
from pydantic import BaseModel

from api.errors import NotFound

M = TypeVar("M", bound=BaseModel)


def from_row(model: type[M], row: Sequence[Any]) -> M:
    return model.model_validate(dict(zip(model.model_fields, row, strict=True)))


async def fetch_one(conn: psycopg.AsyncConnection[Any], model: type[M], query: LiteralString,
                    params: Sequence[Any], kind: str, key: object) -> M:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    if row is None:
        raise NotFound(kind, key)
    return from_row(model, row)
