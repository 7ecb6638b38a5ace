"""The --standby options reach the lock's timing, and a bad broker grace is refused at
start-up; no I/O."""

from __future__ import annotations

import pytest

from stack.cli import build_parser, lock_timing


@pytest.mark.parametrize("service", ["ingest", "rules"])
def test_the_broker_grace_reaches_the_lock_timing(service: str) -> None:
    args = build_parser().parse_args([service, "--standby", "--broker-grace-s", "30"])
    timing = lock_timing(args)
    assert timing is not None and timing.broker_grace_s == 30.0
    default = lock_timing(build_parser().parse_args([service, "--standby"]))
    assert default is not None and default.broker_grace_s == 15.0
    assert lock_timing(build_parser().parse_args([service])) is None


def test_a_grace_shorter_than_the_lock_check_is_refused() -> None:
    args = build_parser().parse_args(["ingest", "--standby", "--lock-poll-s", "1",
                                      "--broker-grace-s", "0.5"])
    with pytest.raises(ValueError, match="broker grace"):
        lock_timing(args)
