"""Running one service as a process: logging set up for a duty engineer to read, SIGTERM and
SIGINT turned into cancellation of the service's main task, so every service shuts down
through its own ``finally`` blocks and exits 0."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


def setup_logging(service: str, level: str = "INFO") -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format=f"%(asctime)s %(levelname)-7s {service:<10} %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    for noisy in ("pymodbus", "bacpypes3", "BAC0", "amqtt", "uvicorn.access",
                  "apscheduler.executors.default", "transitions"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))


async def _run_until_signal(main: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(main)
    loop = asyncio.get_running_loop()

    def stop(sig: signal.Signals) -> None:
        log.info("received %s: shutting down", sig.name)
        task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig)
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise


def run_service(main: Coroutine[Any, Any, None]) -> int:
    """Run a service coroutine until it ends or a signal arrives; the exit status."""
    try:
        asyncio.run(_run_until_signal(main))
    except KeyboardInterrupt:
        return 0
    return 0
