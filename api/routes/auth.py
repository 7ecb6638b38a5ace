"""Signing in and out: POST /auth/token (OAuth2 password form -> opaque bearer token), throttled
per user name and per client address (api.sign_in_throttle; a refused attempt is 429 with Retry-
After and its password is never checked); POST /auth/sign-out revokes the token on the server;
GET /me (with scope and language), PUT /me/language. For admins: GET /auth/locks (user names and
addresses with failures, delays and locks) and DELETE /auth/locks?kind&key to clear one. Every
sign-in, sign-out and cleared lock goes to the audit log (api.audit)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Literal, NoReturn

from fastapi import APIRouter, Depends, HTTPException, Query, Response, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, ConfigDict, Field

from api import audit, sign_in_throttle, tokens
from api.deps import (
    Admin,
    BearerToken,
    ClientAddress,
    Config,
    Conn,
    CurrentUser,
    DbConnection,
    Pool,
)
from api.errors import NotFound
from facility.users import Language, User, check_password, stored_login

log = logging.getLogger(__name__)
router = APIRouter(tags=["auth"])
MAX_CREDENTIAL_LEN = 256


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UserOut(BaseModel):
    username: str
    display_name: str
    role: str
    trade: str | None
    language: Language
    scope: list[str] | None = Field(description="null: every site; else 'site' and"
                                    " 'site/building' entries")


class LanguageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: Language


class LockOut(BaseModel):
    kind: sign_in_throttle.Kind
    key: str
    failures: int
    last_failure_at: datetime
    delayed_until: datetime | None
    locked_until: datetime | None


def _bad_credentials() -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, "incorrect username or password",
                         headers={"WWW-Authenticate": "Bearer"})


@router.post(
    "/auth/token", response_model=TokenOut,
    responses={401: {"description": "bad credentials"},
               429: {"description": "too many failed sign-ins: wait Retry-After seconds"}},
)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], pool: Pool, config: Config,
    address: ClientAddress,
) -> TokenOut:
    """Charged (throttle) and read on one connection, the password checked with none held
    (argon2 takes a while), the outcome written on another."""
    username, password = form.username, form.password
    if len(username) > MAX_CREDENTIAL_LEN or len(password) > MAX_CREDENTIAL_LEN or (
            "\x00" in username):
        raise _bad_credentials()
    async with pool.connection() as conn:
        admitted = await sign_in_throttle.admit(conn, config.throttle, username, address)
        if isinstance(admitted, sign_in_throttle.Refusal):
            await _refuse(conn, admitted, username, address)
        stored = await stored_login(conn, username)
    user = await check_password(stored, password)
    async with pool.connection() as conn:
        if user is None:
            sign_in_throttle.failed(admitted)
            await audit.record(conn, actor=None, action="sign_in", target=username,
                               outcome="failure", reason="bad_credentials", address=address,
                               detail={"failures": admitted.failures["user"]})
            raise _bad_credentials()
        await sign_in_throttle.succeeded(conn, admitted)
        async with conn.transaction():
            token = await tokens.issue_token(conn, user.id, config.token_ttl)
            await audit.record(conn, actor=user.username, action="sign_in",
                               target=user.username, address=address)
    return TokenOut(access_token=token, expires_in=int(config.token_ttl.total_seconds()))


async def _refuse(
    conn: DbConnection, admitted: sign_in_throttle.Refusal, username: str, address: str
) -> NoReturn:
    log.debug("sign-in refused for user %r from %s: %s %s", username, address,
              admitted.kind, admitted.reason)
    await audit.record_refusal(conn, target=username, reason=admitted.reason,
                               address=address, detail={"by": admitted.kind,
                               "until": admitted.until.isoformat()})
    what = "locked" if admitted.reason == "locked" else "delayed"
    raise HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"too many failed sign-ins: {what}, try again in {admitted.retry_after_s} s",
        headers={"Retry-After": str(admitted.retry_after_s)})


@router.post("/auth/sign-out", status_code=204, response_class=Response)
async def sign_out(
    conn: Conn, user: CurrentUser, token: BearerToken, address: ClientAddress
) -> Response:
    """Revoke this token at once (every request and live stream using it ends)."""
    async with conn.transaction():
        await tokens.revoke(conn, token)
        await audit.record(conn, actor=user.username, action="sign_out", target=user.username,
                           address=address)
    return Response(status_code=204)


def _me(user: User, language: Language | None = None) -> UserOut:
    return UserOut(username=user.username, display_name=user.display_name, role=user.role,
                   trade=user.trade, language=language or user.language,
                   scope=user.scope.entries)


@router.get("/me", response_model=UserOut)
async def me(user: CurrentUser) -> UserOut:
    return _me(user)


@router.put("/me/language", response_model=UserOut)
async def choose_language(conn: Conn, user: CurrentUser, body: LanguageIn) -> UserOut:
    """The language of the pages and of the API's messages for this user, remembered."""
    await conn.execute("UPDATE users SET language = %s WHERE id = %s",
                       (body.language, user.id))
    return _me(user, body.language)


@router.get("/auth/locks", response_model=list[LockOut])
async def list_locks(conn: Conn, config: Config, user: Admin) -> list[LockOut]:
    """User names and client addresses with failed sign-ins still counted, delayed or locked;
    locked first."""
    return [LockOut(kind=e.kind, key=e.key, failures=e.failures,
                    last_failure_at=e.last_failure_at, delayed_until=e.delayed_until,
                    locked_until=e.locked_until)
            for e in await sign_in_throttle.entries(conn, config.throttle)]


@router.delete("/auth/locks", status_code=204, response_class=Response,
               responses={404: {"description": "nothing to clear"}})
async def clear_lock(
    conn: Conn, user: Admin, address: ClientAddress,
    kind: Annotated[sign_in_throttle.Kind, Query()],
    key: Annotated[str, Query(min_length=1, max_length=MAX_CREDENTIAL_LEN)],
) -> Response:
    """Forget a user name's or an address's failures, delay and lock."""
    async with conn.transaction():
        if not await sign_in_throttle.clear(conn, kind, key):
            raise NotFound(f"sign-in failures of {kind}", key)
        await audit.record(conn, actor=user.username, action="sign_in_lock.clear", target=key,
                           address=address, detail={"kind": kind})
    return Response(status_code=204)
