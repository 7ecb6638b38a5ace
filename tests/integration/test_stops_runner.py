"""facility.runner past its bound (issue 17): a service that does not end after SIGTERM
(here one that swallows every cancellation and ignores its stop signal) is not left
running: the runner logs the tasks still running and where they wait, runs the service's
last save and exits with EXIT_OVERDUE. A service that ends in time exits 0."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from facility.runner import EXIT_OVERDUE

SERVICE = r"""
import asyncio, sys
from pathlib import Path
from facility.runner import run_service, setup_logging
from facility.stopping import Stopping

stubborn = sys.argv[1] == "stubborn"
saved = Path(sys.argv[2])
bound_s = float(sys.argv[3])

async def main(stopping: Stopping) -> None:
    stopping.on_overdue("the test's state", lambda: saved.write_text("saved"))
    polling = asyncio.Event()
    async def poll_forever() -> None:
        polling.set()
        while True:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                if not stubborn:
                    raise
    task = asyncio.create_task(poll_forever(), name="poll[stubborn-device]")
    await polling.wait()
    print("ready", flush=True)
    await stopping.wait()
    task.cancel()
    await task

setup_logging("test")
stopping = Stopping()
sys.exit(run_service(main(stopping), stopping=stopping, bound_s=bound_s))
"""


def _run(tmp_path: Path, mode: str, bound_s: float) -> tuple[int, str, Path]:
    saved = tmp_path / f"saved-{mode}"
    proc = subprocess.Popen([sys.executable, "-c", SERVICE, mode, str(saved), str(bound_s)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"ready"  # polling, signal handlers in place
    proc.send_signal(signal.SIGTERM)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("the runner did not end the process")
    return proc.returncode, out.decode(errors="replace"), saved


def test_past_the_bound_the_runner_logs_the_tasks_saves_and_exits_nonzero(tmp_path: Path) -> None:
    status, log, saved = _run(tmp_path, "stubborn", bound_s=1.0)  # it never ends
    assert status == EXIT_OVERDUE, log
    assert "stop overdue" in log and "poll[stubborn-device]" in log, log
    assert saved.read_text() == "saved"


def test_a_service_that_ends_in_time_exits_zero_without_its_last_save(tmp_path: Path) -> None:
    # a bound no loaded machine reaches: the test is about the exit, not the speed
    status, log, saved = _run(tmp_path, "polite", bound_s=60.0)
    assert status == 0, log
    assert "stopped in" in log and "overdue" not in log
    assert not saved.exists()
