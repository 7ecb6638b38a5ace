"""facility.db.outage (one classification of database errors) and facility.db.connect's
parameters: "not the primary" and "connection lost" are outages to wait out, an error about
what was asked is a refusal; a URL's own parameters win over the defaults, and a multi-host
URL asks for the read-write node. Pure: no server."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from facility.db.connect import connection_params, hosts
from facility.db.outage import describe, is_outage


@pytest.mark.parametrize("exc", [
    errors.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"),
    errors.AdminShutdown("terminating connection due to administrator command"),
    errors.CrashShutdown("crash"),
    errors.CannotConnectNow("the database system is starting up"),
    errors.IdleSessionTimeout("idle"),
    errors.TooManyConnections("too many"),
    errors.ConnectionFailure("lost"),
    psycopg.OperationalError("connection failed: Connection refused"),
    psycopg.InterfaceError("the connection is closed"),
])
def test_outages_are_waited_out(exc: Exception) -> None:
    assert is_outage(exc)


@pytest.mark.parametrize("exc", [
    errors.UniqueViolation("duplicate key"),
    errors.CheckViolation("no partition"),
    errors.InvalidTextRepresentation("bad input"),
    errors.InsufficientPrivilege("permission denied"),
    errors.UndefinedTable("no such table"),
    errors.QueryCanceled("statement timeout"),
    errors.ProgramLimitExceeded("too long"),
    ValueError("not a database error"),
])
def test_refusals_are_not_outages(exc: Exception) -> None:
    assert not is_outage(exc)


def test_describe_names_the_sqlstate() -> None:
    assert describe(errors.ReadOnlySqlTransaction("read-only\nDETAIL")) == "read-only [25006]"
    assert describe(psycopg.OperationalError("")) == "OperationalError"


def test_a_multi_host_url_asks_for_the_primary_and_the_url_wins() -> None:
    url = "postgresql://u:p@10.0.0.1:5432,10.0.0.2:5432/db?connect_timeout=7"
    params = connection_params(url)
    assert hosts(url) == ["10.0.0.1", "10.0.0.2"]
    assert params["target_session_attrs"] == "read-write"
    assert "connect_timeout" not in params  # the URL's 7 s stands
    assert params["keepalives_idle"] == 5 and params["tcp_user_timeout"] == 10_000


def test_a_single_host_url_gets_timeouts_but_no_session_attrs() -> None:
    params = connection_params("postgresql://u@127.0.0.1:5432/db", application_name="x")
    assert "target_session_attrs" not in params
    assert params["connect_timeout"] == 2 and params["application_name"] == "x"
    explicit = connection_params("postgresql://u@a,b/db?target_session_attrs=any")
    assert "target_session_attrs" not in explicit
