"""Opening database connections and pools, the same way in every service.

``FACILITY_DATABASE_URL`` is one libpq URL: a single server, the HAProxy in front of a
Patroni cluster, or every node of it with libpq choosing the primary:

    postgresql://facility@10.0.0.11:5432,10.0.0.12:5432,10.0.0.13:5432/facility
        ?target_session_attrs=read-write

Whatever the URL leaves out is set here so that a dead peer is noticed within seconds:
``connect_timeout`` (per host: psycopg tries the hosts in turn), TCP keepalives (idle 5 s,
every 2 s, 3 probes) and ``tcp_user_timeout`` (unacknowledged data for 10 s: the machine is
gone). Parameters the URL gives win. ``target_session_attrs=read-write`` is added to a
multi-host URL that does not say otherwise (a service writes; a standby would refuse it).

No I/O except the connect functions themselves."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import AsyncConnectionPool

CONNECT_TIMEOUT_S = 2  # per host; libpq rounds anything lower up to 2
DEFAULTS: dict[str, str | int] = {
    "connect_timeout": CONNECT_TIMEOUT_S,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,  # ms
}


def hosts(url: str) -> list[str]:
    """The hosts the URL names, in order (one for a plain URL)."""
    host = str(conninfo_to_dict(url).get("host") or "")
    return [h for h in host.split(",") if h] or ["(default)"]


def connection_params(url: str, **overrides: Any) -> dict[str, Any]:
    """psycopg keyword arguments that complete ``url`` (the URL's own values kept)."""
    given = conninfo_to_dict(url)
    params: dict[str, Any] = {k: v for k, v in DEFAULTS.items() if k not in given}
    if len(hosts(url)) > 1 and "target_session_attrs" not in given:
        params["target_session_attrs"] = "read-write"
    params.update(overrides)
    return params


async def connect(url: str, *, autocommit: bool = True, application_name: str | None = None,
                  **overrides: Any) -> psycopg.AsyncConnection[Any]:
    """An async connection to the primary."""
    if application_name:
        overrides["application_name"] = application_name
    return await psycopg.AsyncConnection.connect(
        url, autocommit=autocommit, **connection_params(url, **overrides))


def connect_sync(url: str, *, autocommit: bool = True, **overrides: Any
                 ) -> psycopg.Connection[Any]:
    """A blocking connection to the primary (start-up checks, migrations, tools)."""
    return psycopg.connect(url, autocommit=autocommit, **connection_params(url, **overrides))


def pool(url: str, *, min_size: int = 1, max_size: int = 4, name: str | None = None,
         timeout_s: float = 30.0, **overrides: Any) -> AsyncConnectionPool[Any]:
    """An async pool (not yet open) of autocommit connections to the primary; each
    connection is checked before it is handed out, so one broken by a failover is replaced
    instead of failing a request."""
    return AsyncConnectionPool(
        url, min_size=min_size, max_size=max_size, open=False, name=name, timeout=timeout_s,
        kwargs={"autocommit": True, **connection_params(url, **overrides)},
        check=AsyncConnectionPool.check_connection)
