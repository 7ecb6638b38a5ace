"""One answer, for every service, to "is this database error an outage to wait out, or a
refusal of what was asked?"; pure (no I/O).

An outage is anything that says the server we talk to cannot take our work right now but
the same work will succeed once we reach a primary again: no connection could be made or
it broke (no SQLSTATE, class 08), the server is shutting down or starting (57P01 admin
shutdown, 57P02 crash shutdown, 57P03 cannot connect now), the session was ended by an
idle timeout (57P05), the server is out of connection slots (53300), or the node we reached
is a standby, or was demoted under us (25006 read-only transaction: during a failover a
connection may still reach the old primary). The work is held and retried on a new
connection, never dead-lettered or answered with a 500.

Everything else the server answered (a constraint, a type, a permission, a bug in our SQL) is
a refusal: retrying the same work gives the same answer.

A write interrupted by an outage may or may not have committed ("commit outcome unknown":
the server can commit and the reply be lost). Callers retry such a write only where it is
idempotent; see docs/operations.md, "High availability"."""

from __future__ import annotations

import psycopg

# SQLSTATEs of errors the server sends while it cannot take writes from us for now
OUTAGE_SQLSTATES = frozenset({
    "25006",  # read_only_sql_transaction: a standby, or a primary being demoted
    "57P01",  # admin_shutdown (fast shutdown, Patroni's demote or restart)
    "57P02",  # crash_shutdown
    "57P03",  # cannot_connect_now (starting up, in recovery, shutting down)
    "57P05",  # idle_session_timeout
    "53300",  # too_many_connections
    "08000", "08001", "08003", "08004", "08006", "08007", "08P01",
})


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` means "no primary reachable right now": wait and retry on a new
    connection. False for a refusal (or for something that is not a database error)."""
    if not isinstance(exc, psycopg.Error):
        return False
    sqlstate = exc.sqlstate
    if sqlstate is None:
        # no answer from a server: connection refused, timed out, closed, pool timeout
        return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
    return sqlstate in OUTAGE_SQLSTATES or sqlstate.startswith("08")


def describe(exc: BaseException) -> str:
    """A short reason for a log line: the SQLSTATE (when the server sent one) and message."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    sqlstate = getattr(exc, "sqlstate", None)
    return f"{text} [{sqlstate}]" if sqlstate else text
