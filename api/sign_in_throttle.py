"""Sign-in throttling, per attempted user name and per client address, in PostgreSQL (table
``sign_in_throttle``, migration 0009) so that every API process and a restart see the same
counts.

After ``free_failures`` failures in a row the next attempt must wait an exponential delay
(``first_delay_s``, then doubled: 1, 2, 4, ... s by default, capped at ``max_delay_s``); at
``lock_after`` failures the user name (or the address) is locked for ``lock_s``. An address
(many people behind one office router) has its own, higher thresholds. Counts are forgotten
``lock_s`` after the last failure and when a lock has been served; a successful sign-in
clears its user name's count.

``admit`` charges an attempt as a failure *before* the password is verified, in one short
transaction that locks the two rows (user first, then address: one order, no deadlock); an
attempt that finds a delay or a lock is refused there and then, so a locked account never
costs an argon2 verification and a burst of parallel guesses cannot slip past the delay.
``succeeded`` refunds the charge. ``ThrottlePolicy.after`` is the pure rule."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import psycopg

log = logging.getLogger(__name__)
Kind = Literal["user", "address"]
KINDS: tuple[Kind, ...] = ("user", "address")


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    free_failures_user: int = 3
    free_failures_address: int = 10
    first_delay_s: float = 1.0
    max_delay_s: float = 60.0
    lock_after_user: int = 10
    lock_after_address: int = 50
    lock_s: float = 900.0

    def lock_after(self, kind: Kind) -> int:
        return self.lock_after_user if kind == "user" else self.lock_after_address

    def free_failures(self, kind: Kind) -> int:
        return self.free_failures_user if kind == "user" else self.free_failures_address

    def after(
        self, kind: Kind, failures: int, now: datetime
    ) -> tuple[datetime | None, datetime | None]:
        """(delayed_until, locked_until) after ``failures`` failures in a row at ``now``."""
        if failures >= self.lock_after(kind):
            return None, now + timedelta(seconds=self.lock_s)
        if failures >= (free := self.free_failures(kind)):
            delay_s = min(self.first_delay_s * 2.0 ** (failures - free), self.max_delay_s)
            return now + timedelta(seconds=delay_s), None
        return None, None


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an attempt was refused without looking at the password."""

    kind: Kind
    key: str
    reason: Literal["delayed", "locked"]
    until: datetime
    retry_after_s: int


@dataclass(frozen=True, slots=True)
class Charge:
    """An admitted attempt, charged as a failure: the counts and blocks it left behind."""

    username: str
    address: str
    failures: dict[Kind, int]
    delayed_until: dict[Kind, datetime | None]
    locked_until: dict[Kind, datetime | None]


@dataclass(frozen=True, slots=True)
class Entry:
    kind: Kind
    key: str
    failures: int
    last_failure_at: datetime
    delayed_until: datetime | None
    locked_until: datetime | None


PRUNE_AFTER = timedelta(days=1)
_ROW = ("SELECT failures, last_failure_at, delayed_until, locked_until FROM sign_in_throttle"
        " WHERE kind = %s AND key = %s FOR UPDATE")


def _keys(username: str, address: str) -> tuple[tuple[Kind, str], ...]:
    return (("user", username), ("address", address))


def _current(row: tuple[Any, ...], now: datetime, policy: ThrottlePolicy) -> int:
    """The failure count still in force: zero once a lock was served or the last failure is
    older than the lock time."""
    failures, last, _delayed, locked = row
    if locked is not None and locked <= now:
        return 0
    if last < now - timedelta(seconds=policy.lock_s):
        return 0
    return int(failures)


async def admit(
    conn: psycopg.AsyncConnection[Any], policy: ThrottlePolicy, username: str, address: str
) -> Refusal | Charge:
    """Refuse the attempt if its user name or address is delayed or locked; otherwise charge it
    as a failure (refunded by ``succeeded``)."""
    keys = _keys(username, address)
    # Prune what nobody needs any more (user names an attacker made up, served locks).
    await conn.execute("DELETE FROM sign_in_throttle WHERE last_failure_at < now() - %s"
                       " AND coalesce(locked_until, '-infinity') < now()", (PRUNE_AFTER,))
    async with conn.transaction():
        cur = await conn.execute("SELECT now()")
        row = await cur.fetchone()
        assert row is not None
        now: datetime = row[0]
        current: dict[Kind, int] = {}
        for kind, key in keys:
            await conn.execute("INSERT INTO sign_in_throttle (kind, key) VALUES (%s, %s)"
                               " ON CONFLICT DO NOTHING", (kind, key))
            cur = await conn.execute(_ROW, (kind, key))
            state = await cur.fetchone()
            assert state is not None
            _f, _l, delayed, locked = state
            for reason, until in (("locked", locked), ("delayed", delayed)):
                if until is not None and until > now:
                    wait_s = max(1, int((until - now).total_seconds() + 0.999))
                    return Refusal(kind, key, reason, until, wait_s)  # type: ignore[arg-type]
            current[kind] = _current(state, now, policy) + 1
        delayed_until: dict[Kind, datetime | None] = {}
        locked_until: dict[Kind, datetime | None] = {}
        for kind, key in keys:
            delayed, locked = policy.after(kind, current[kind], now)
            delayed_until[kind], locked_until[kind] = delayed, locked
            await conn.execute(
                "UPDATE sign_in_throttle SET failures = %s, last_failure_at = %s,"
                " delayed_until = %s, locked_until = %s WHERE kind = %s AND key = %s",
                (current[kind], now, delayed, locked, kind, key))
    return Charge(username, address, current, delayed_until, locked_until)


def failed(charge: Charge) -> None:
    """Log a failure that the charge already counted (a lock once, at WARNING)."""
    delays = [until for until in charge.delayed_until.values() if until is not None]
    log.info("sign-in failed for user %r from %s (%d failures for the user, %d for the"
             " address)%s", charge.username, charge.address, charge.failures["user"],
             charge.failures["address"],
             f"; next attempt after {max(delays).isoformat(timespec='seconds')}"
             if delays else "")
    for kind, key in _keys(charge.username, charge.address):
        until, failures = charge.locked_until[kind], charge.failures[kind]
        if until is not None:
            log.warning("sign-in locked for %s %r until %s after %d failed attempts",
                        kind, key, until.isoformat(timespec="seconds"), failures)


async def succeeded(conn: psycopg.AsyncConnection[Any], charge: Charge) -> None:
    """Refund the charge: the user name's count goes, the address's drops by one (its delay
    or lock, which this attempt may have started, with it)."""
    async with conn.transaction():
        await conn.execute("DELETE FROM sign_in_throttle WHERE kind = 'user' AND key = %s",
                           (charge.username,))
        await conn.execute(
            "UPDATE sign_in_throttle SET failures = greatest(failures - 1, 0),"
            " delayed_until = NULL, locked_until = NULL WHERE kind = 'address' AND key = %s",
            (charge.address,))
        await conn.execute("DELETE FROM sign_in_throttle WHERE kind = 'address' AND key = %s"
                           " AND failures = 0", (charge.address,))


async def entries(conn: psycopg.AsyncConnection[Any], policy: ThrottlePolicy) -> list[Entry]:
    """User names and addresses with failures still in force, delayed or locked, worst
    first."""
    cur = await conn.execute(
        "SELECT kind, key, failures, last_failure_at, delayed_until, locked_until"
        " FROM sign_in_throttle WHERE failures > 0 AND (locked_until > now()"
        " OR (locked_until IS NULL AND last_failure_at > now() - %s))"
        " ORDER BY locked_until DESC NULLS LAST, failures DESC, kind, key",
        (timedelta(seconds=policy.lock_s),))
    return [Entry(*r) for r in await cur.fetchall()]


async def clear(conn: psycopg.AsyncConnection[Any], kind: Kind, key: str) -> bool:
    """Forget a user name's or an address's failures, delay and lock; False if none."""
    cur = await conn.execute("DELETE FROM sign_in_throttle WHERE kind = %s AND key = %s"
                             " AND failures > 0", (kind, key))
    return cur.rowcount > 0
