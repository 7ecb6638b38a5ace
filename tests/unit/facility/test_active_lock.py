"""The active lock's timing: a cut-off active must notice before the server lets its lock
go, and the server's keepalive settings travel in the connection's options; no I/O."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from facility.db.active_lock import LockTiming, primary_first


def test_defaults_notice_a_lost_database_before_the_server_releases_the_lock() -> None:
    timing = LockTiming()
    assert timing.notice_s == 2.0
    assert timing.server_release_s == 4.0


def test_a_check_slower_than_the_servers_release_is_refused() -> None:
    with pytest.raises(ValueError, match="before the server releases"):
        LockTiming(poll_s=4.0, check_s=4.0)


def test_non_positive_intervals_are_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        LockTiming(poll_s=0)


def test_both_ends_of_the_lock_connection_keep_alive() -> None:
    kwargs = LockTiming(keepalive_idle_s=3, keepalive_interval_s=2, keepalive_count=4
                        ).connect_kwargs()
    assert kwargs["keepalives_idle"] == 3 and kwargs["keepalives_count"] == 4
    assert "-c tcp_keepalives_idle=3" in kwargs["options"]
    assert "-c tcp_keepalives_count=4" in kwargs["options"]
    assert kwargs["tcp_user_timeout"] == 11_000


def test_the_lock_holding_server_comes_first_in_a_multi_host_target() -> None:
    url = ("postgresql://app:secret@10.0.0.1:5432,10.0.0.2:5432,10.0.0.3:5433/facility"
           "?target_session_attrs=read-write&connect_timeout=3")
    params = conninfo_to_dict(primary_first(url, "10.0.0.3", 5433))
    assert params["host"] == "10.0.0.3,10.0.0.1,10.0.0.2"
    assert params["port"] == "5433,5432,5432"
    assert params["password"] == "secret"
    assert params["target_session_attrs"] == "read-write"


def test_a_single_host_or_an_unlisted_one_leaves_the_target_alone() -> None:
    single = "postgresql://app@127.0.0.1:5000/facility"
    assert primary_first(single, "127.0.0.1", 5000) == single
    multi = "postgresql://app@a:5432,b:5432/facility"
    assert primary_first(multi, "c", 5432) == multi
    assert conninfo_to_dict(primary_first("host=a,b dbname=x", "b", 5432))["host"] == "b,a"
