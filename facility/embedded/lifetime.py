"""Lifetime of child processes: they end with their parent (on Linux the kernel sends SIGTERM
to the child when the process that started it dies, even by SIGKILL, so a killed demo
leaves no orphans), and they are stopped by pid with a signal, then killed if they linger."""

from __future__ import annotations

import ctypes
import logging
import signal
import subprocess
import sys

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
