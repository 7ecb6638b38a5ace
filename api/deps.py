"""Request dependencies (``Annotated`` aliases): the app's settings, the connection pool, the
authenticated user from the bearer token, a pooled database connection for the route's queries,
and role checks.

No request holds a pooled connection longer than its work with the database (a live stream
that kept one would hold it for hours, and the pool has a handful):

- ``CurrentUser`` checks the token on a connection of its own, given back before it returns.
- ``Conn`` is the route's connection (autocommit; writes open their own transaction), taken
  once the caller is authenticated, so that a request never holds two at once (requests
  holding one while waiting for a second could starve the pool), and given back as soon as the
  route function returns, before the response is sent (``scope="function"``): neither a slow
  client nor a streaming body keeps it. ``PublicConn`` is the same for the routes without
  sign-in (signing in, the residents' public page).
- Routes with slow work between their queries (password hashing, printing a PDF) and the live
  stream take ``Pool`` and hold a connection around their queries only."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any

import psycopg
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer
from psycopg_pool import AsyncConnectionPool

from api import tokens
from api.event_hub import HubLimits
from api.sign_in_throttle import ThrottlePolicy
from facility.site import Site
from facility.users import Role, User

TOKEN_URL = "/api/v1/auth/token"


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """What create_app was given; kept on app.state.config."""

    database_url: str
    site: Site | None
    token_ttl: timedelta
    throttle: ThrottlePolicy
    chromium: str = "chromium"  # prints the monthly report as PDF (api.report_pdf)
    hub: HubLimits = field(default_factory=HubLimits)  # live stream bounds (api.event_hub)


def get_config(request: Request) -> ApiConfig:
    config: ApiConfig = request.app.state.config
    return config


def get_pool(request: Request) -> AsyncConnectionPool[psycopg.AsyncConnection[Any]]:
    pool: AsyncConnectionPool[psycopg.AsyncConnection[Any]] = request.app.state.pool
    return pool


Config = Annotated[ApiConfig, Depends(get_config)]
Pool = Annotated[AsyncConnectionPool[psycopg.AsyncConnection[Any]], Depends(get_pool)]


_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def get_token(token: Annotated[str | None, Depends(_bearer)]) -> str:
    """The bearer token as sent (not yet checked)."""
    if not token:
        raise _unauthorized("not authenticated: send Authorization: Bearer <token>")
    if len(token) > 200:
        raise _unauthorized("invalid or expired token")
    return token


BearerToken = Annotated[str, Depends(get_token)]


async def get_current_user(pool: Pool, token: BearerToken) -> User:
    async with pool.connection() as conn:
        user = await tokens.user_for_token(conn, token)
    if user is None:
        raise _unauthorized("invalid or expired token")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]
DbConnection = psycopg.AsyncConnection[Any]


async def _public_connection(pool: Pool) -> AsyncIterator[DbConnection]:
    async with pool.connection() as conn:
        yield conn


async def _connection_of(pool: Pool, user: CurrentUser) -> AsyncIterator[DbConnection]:
    """``user`` is why it waits: the token is checked (and its connection back) first."""
    async with pool.connection() as conn:
        yield conn


Conn = Annotated[DbConnection, Depends(_connection_of, scope="function")]
PublicConn = Annotated[DbConnection, Depends(_public_connection, scope="function")]


def client_address(request: Request) -> str:
    """The client's address as uvicorn gives it (behind a trusted proxy: X-Forwarded-For, see
    docs/api.md)."""
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(client_address)]


def require_roles(*roles: Role) -> Callable[[User], Coroutine[Any, Any, User]]:
    """A dependency that passes the current user through if their role is one of ``roles``."""
    allowed = frozenset(roles)

    async def check(user: CurrentUser) -> User:
        if user.role not in allowed:
            names = ", ".join(sorted(allowed))
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"role {user.role} may not do this (needs {names})"
            )
        return user

    return check


R = Role
Acknowledger = Annotated[User, Depends(require_roles(R.OPERATOR, R.ADMIN))]
"""Acknowledges and shelves alarms: the duty room (and admin)."""
Supervisor = Annotated[User, Depends(require_roles(R.OPERATOR, R.MANAGER, R.ADMIN))]
"""Dispatches work: logs repair requests, assigns, closes, cancels."""
Fieldworker = Annotated[User, Depends(require_roles(R.OPERATOR, R.TECHNICIAN, R.ADMIN))]
"""Works on an order: transitions and checklist steps (checked further per order)."""
DISPATCHING_ROLES = frozenset({R.OPERATOR, R.MANAGER, R.ADMIN})
"""Dispatch work, and so see staff phone numbers (the roster's mobiles): the Supervisor roles."""
Authoriser = Annotated[User, Depends(require_roles(R.MANAGER, R.ADMIN))]
"""Takes alarms out of service and reads the reports."""
Admin = Annotated[User, Depends(require_roles(R.ADMIN))]
