"""Lifetime of child processes: they end with their parent (on Linux the kernel sends SIGTERM
to the child when the process that started it dies, even by SIGKILL, so a killed demo
leaves no orphans), and they are stopped by pid with a signal, then killed if they linger;
``stop_processes`` signals several at once and waits for them against one deadline."""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """preexec_fn for subprocess.Popen (no-op off Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def stop_process(
    proc: subprocess.Popen[bytes] | None, name: str, *, sig: int = signal.SIGTERM,
    timeout_s: float = 15.0,
) -> None:
    """Ask a child to stop with ``sig``, wait, and kill it if it does not go in time."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("%s (pid %d) did not stop within %.0f s; killing it", name, proc.pid,
                    timeout_s)
        proc.kill()
        proc.wait()


def stop_processes(
    procs: Sequence[tuple[str, subprocess.Popen[bytes] | None]], *,
    sig: int = signal.SIGTERM, timeout_s: float = 15.0,
) -> dict[str, int]:
    """Signal every running child at once, wait for all of them until one deadline, kill
    those still running; each one's exit status (negative: the signal that ended it)."""
    started = time.monotonic()
    running = [(name, p) for name, p in procs if p is not None and p.poll() is None]
    for _name, proc in running:
        proc.send_signal(sig)
    statuses: dict[str, int] = {}
    for name, proc in running:
        try:
            statuses[name] = proc.wait(max(0.0, started + timeout_s - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s (pid %d) did not stop within %.0f s; killing it", name, proc.pid,
                        timeout_s)
            proc.kill()
            statuses[name] = proc.wait()
            continue
        if statuses[name] != 0:
            log.warning("%s exited with status %d", name, statuses[name])
    if running:
        log.info("stopped %s in %.1f s", ", ".join(name for name, _p in running),
                 time.monotonic() - started)
    return statuses
