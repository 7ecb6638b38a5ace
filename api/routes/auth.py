"""POST /auth/token (OAuth2 password form -> opaque bearer token) and GET /me."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel

from api import tokens
from api.deps import Config, Conn, CurrentUser
from facility.users import authenticate

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


@router.post(
    "/auth/token", response_model=TokenOut, responses={401: {"description": "bad credentials"}}
)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], conn: Conn, config: Config
) -> TokenOut:
    user = None
    if len(form.username) <= MAX_CREDENTIAL_LEN and len(form.password) <= MAX_CREDENTIAL_LEN:
        if "\x00" not in form.username:
            user = await authenticate(conn, form.username, form.password)
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "incorrect username or password",
            headers={"WWW-Authenticate": "Bearer"},
        )
    token = await tokens.issue_token(conn, user.id, config.token_ttl)
    return TokenOut(access_token=token, expires_in=int(config.token_ttl.total_seconds()))


@router.get("/me", response_model=UserOut)
async def me(user: CurrentUser) -> UserOut:
    return UserOut(
        username=user.username, display_name=user.display_name, role=user.role, trade=user.trade
    )
