"""Staff accounts: argon2 password hashing (pwdlib), creating users, the demo users, and
checking a username and password. Passwords never leave this module in clear; the database
keeps only argon2 hashes. ``create_user``/``ensure_demo_users`` take a synchronous psycopg
connection (the CLI's set-up steps); ``authenticate`` takes an async one, and the API
reads the ``stored_login`` and checks the password apart, with no connection held meanwhile."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

import psycopg
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from facility.scope import Scope

log = logging.getLogger(__name__)

_HASHER = PasswordHash((Argon2Hasher(),))


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so that a wrong name costs as much
    time as a wrong password."""
    return _HASHER.hash("facility-dummy-password")


Language = Literal["zh-CN", "en"]


class Role(StrEnum):
    OPERATOR = "operator"
    TECHNICIAN = "technician"
    MANAGER = "manager"
    ADMIN = "admin"


DEMO_USERS: tuple[tuple[str, Role, str], ...] = (
    ("operator", Role.OPERATOR, "Duty-room operator"),
    ("technician", Role.TECHNICIAN, "On-call technician"),
    ("manager", Role.MANAGER, "Property manager"),
    ("admin", Role.ADMIN, "Administrator"),
)
# The demo's on-call staff per trade (sites/demo-dispatch.yaml rosters them):
# (username, role, display name, trade).
DEMO_STAFF: tuple[tuple[str, Role, str, str | None], ...] = (
    ("tech-elevator-1", Role.TECHNICIAN, "电梯维保 王工", "elevator"),
    ("tech-elevator-2", Role.TECHNICIAN, "电梯维保 李工", "elevator"),
    ("tech-electrical-1", Role.TECHNICIAN, "电工 张工", "electrical"),
    ("tech-plumbing-1", Role.TECHNICIAN, "水工 刘工", "plumbing"),
    ("tech-fire-1", Role.TECHNICIAN, "消防维保 陈工", "fire"),
    ("supervisor-engineering", Role.MANAGER, "工程主管 赵工", None),
    ("supervisor-security", Role.MANAGER, "安保主管 孙队", None),
)


class UserExists(ValueError):
    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(f"user {username!r} already exists")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    display_name: str
    role: Role
    trade: str | None
    scope: Scope = field(default_factory=Scope)
    language: Language = "zh-CN"


def language_of(value: str) -> Language:
    """A stored language (the database's CHECK allows only these two)."""
    return "en" if value == "en" else "zh-CN"


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    return _HASHER.verify(password, password_hash)


def create_user(
    conn: psycopg.Connection,
    username: str,
    password: str,
    role: Role | str,
    *,
    display_name: str = "",
    trade: str | None = None,
) -> int:
    """Insert a user and return its id; UserExists if the username is taken."""
    role = Role(role)
    try:
        with conn.transaction():
            row = conn.execute(
                "INSERT INTO users (username, display_name, role, trade, password_hash)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING id",
                (username, display_name, str(role), trade, hash_password(password)),
            ).fetchone()
    except psycopg.errors.UniqueViolation as exc:
        raise UserExists(username) from exc
    assert row is not None
    log.info("created user %s (%s)", username, role)
    return int(row[0])


def set_password(conn: psycopg.Connection, username: str, password: str) -> bool:
    """Replace a user's password; False if there is no such user."""
    with conn.transaction():
        cur = conn.execute(
            "UPDATE users SET password_hash = %s WHERE username = %s",
            (hash_password(password), username),
        )
    return cur.rowcount == 1


def ensure_demo_users(conn: psycopg.Connection, password: str) -> None:
    """Create operator, technician, manager and admin and the demo's on-call staff
    (``DEMO_STAFF``) with this password, or reset their password (and re-activate them) if
    they exist."""
    users = [(u, r, d, None) for u, r, d in DEMO_USERS] + list(DEMO_STAFF)
    password_hash = hash_password(password)
    for username, role, display, trade in users:
        with conn.transaction():
            conn.execute(
                "INSERT INTO users (username, display_name, role, trade, password_hash)"
                " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (username) DO UPDATE"
                " SET password_hash = EXCLUDED.password_hash, active = true",
                (username, display, str(role), trade, password_hash),
            )
    log.info("demo users ready: %s", ", ".join(u[0] for u in users))


@dataclass(frozen=True, slots=True)
class StoredLogin:
    """An active user and their password hash, as read for a sign-in."""

    user: User
    password_hash: str


async def stored_login(conn: psycopg.AsyncConnection, username: str) -> StoredLogin | None:
    """The active user with this username and their hash, or None."""
    cur = await conn.execute(
        "SELECT id, username, display_name, role, trade, password_hash, all_sites, language,"
        " ARRAY(SELECT site_id || CASE building WHEN '' THEN '' ELSE '/' || building END"
        "       FROM user_scopes WHERE user_id = users.id)"
        " FROM users WHERE username = %s AND active",
        (username,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    return StoredLogin(User(id=row[0], username=row[1], display_name=row[2],
                            role=Role(row[3]), trade=row[4],
                            scope=Scope.of(None if row[6] else list(row[8])),
                            language=language_of(row[7])), row[5])


async def check_password(login: StoredLogin | None, password: str) -> User | None:
    """The user if the password is theirs, else None. argon2 is deliberately slow: it runs
    off the event loop (and against a dummy hash when there is no such user, so that a wrong
    name costs as much time as a wrong password). Needs no database connection: the API
    gives its connection back before checking."""
    ok = await asyncio.to_thread(
        verify_password, password, login.password_hash if login else _dummy_hash())
    return login.user if login is not None and ok else None


async def authenticate(
    conn: psycopg.AsyncConnection, username: str, password: str
) -> User | None:
    """The active user with this username and password, or None."""
    return await check_password(await stored_login(conn, username), password)
