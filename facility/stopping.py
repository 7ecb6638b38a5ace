"""A service's stop signal of its own, beside cancellation, and requests that cannot lose a
cancellation; no I/O.

Cancellation alone is not enough to stop a service: a library that swallows a
``CancelledError`` (on Python 3.11 ``asyncio.wait_for``, which pymodbus uses for every
request, returns the result instead of raising when the cancellation and the response land
in the same loop turn) leaves its task running, and a TaskGroup waiting for it forever.
``Stopping`` is an event the runner sets at SIGTERM or SIGINT; long-lived loops test it
(``while not stopping.is_set()``) and sleep on it (``await stopping.sleep(delay_s)``), so they
end at their next turn whatever happened to a ``CancelledError``. ``watch_cancel`` is a
TaskGroup member that turns the group's cancellation into the same signal (a service run in
a task and cancelled, as tests do, stops the same way). ``wind_down`` ends a
service's tasks in order at the signal. A service registers with ``on_overdue`` what to
save synchronously if its stop runs past the runner's bound.

``within(timeout_s, awaitable)`` awaits in a task of its own with ``asyncio.wait``, which
never swallows the caller's cancellation: the replacement for ``asyncio.timeout`` around a
library call that itself uses ``wait_for``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
RECANCEL_S = 0.5


class Stopping:
    """Set once, by a signal handler or by a cancelled ``watch_cancel``; never cleared."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self.reason = ""
        self._salvage: list[tuple[str, Callable[[], None]]] = []
        # sleepers in a set, not on the event: an Event's waiters are a deque whose
        # remove() is O(waiters), and thousands of pollers sleep at once
        self._sleepers: set[asyncio.Future[None]] = set()

    def set(self, reason: str = "requested") -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()
            for sleeper in self._sleepers:
                _wake(sleeper)

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()

    async def sleep(self, delay_s: float) -> bool:
        """Sleep ``delay_s`` or until the stop signal, whichever comes first; whether
        stopping."""
        if self._event.is_set():
            return True
        if delay_s <= 0:
            await asyncio.sleep(0)
            return self._event.is_set()
        loop = asyncio.get_running_loop()
        sleeper: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(delay_s, _wake, sleeper)
        self._sleepers.add(sleeper)
        try:
            await sleeper
        finally:
            timer.cancel()
            self._sleepers.discard(sleeper)
        return self._event.is_set()

    async def until(self, event: asyncio.Event) -> bool:
        """Wait for ``event`` or the stop signal, whichever comes first; whether stopping."""
        if self._event.is_set() or event.is_set():
            return self._event.is_set()
        either = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(self._event.wait())]
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in either:
                waiter.cancel()
        return self._event.is_set()

    async def watch_cancel(self) -> None:
        """Run in a TaskGroup: when the group is cancelled, set the stop signal, so that a
        member that lost its CancelledError still ends at its next turn."""
        try:
            await self._event.wait()
        finally:
            self.set("cancelled")

    def on_overdue(self, what: str, save: Callable[[], None]) -> None:
        """Register a synchronous last save, run if the stop passes its bound."""
        self._salvage.append((what, save))

    def salvage(self) -> None:
        """Run every registered last save; one that fails is logged and the rest still run."""
        for what, save in self._salvage:
            try:
                save()
                log.warning("saved %s before exiting", what)
            except Exception:
                log.exception("could not save %s before exiting", what)


async def wind_down(
    stopping: Stopping, first: Collection[asyncio.Task[Any]],
    then: Collection[asyncio.Task[Any]] = (), *, grace_s: float, cancel_first: bool = False,
    between: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """A TaskGroup member that ends a service's tasks in order at the stop signal: ``first``
    get ``grace_s`` to end by themselves (with ``cancel_first``, they are cancelled at once
    and get ``grace_s`` for their clean-up); those still running are cancelled, again every
    ``RECANCEL_S`` until they end (one may have lost a cancellation to a library); then
    ``between`` runs (e.g. a goodbye on a connection that ``then`` keeps up) and ``then``
    are cancelled the same way."""
    await stopping.wait()
    if cancel_first:
        for task in first:
            task.cancel()
    busy: set[asyncio.Task[Any]] = set(first)
    if busy:
        _done, busy = await asyncio.wait(busy, timeout=grace_s)
    await _cancel_until_done(busy, "still busy after the grace")
    if between is not None:
        await between()
    await _cancel_until_done(set(then), "")


async def _cancel_until_done(tasks: set[asyncio.Task[Any]], why: str) -> None:
    if tasks and why:
        log.info("%s: cancelling %s", why, ", ".join(sorted(t.get_name() for t in tasks)[:5])
                 + (f" and {len(tasks) - 5} more" if len(tasks) > 5 else ""))
    rounds = 0
    while tasks:
        for task in tasks:
            task.cancel()
        _done, tasks = await asyncio.wait(tasks, timeout=RECANCEL_S)
        rounds += 1
        if tasks and rounds == 2:
            log.warning("cancelled again: %s", ", ".join(sorted(t.get_name() for t in tasks)))


async def within(timeout_s: float, awaitable: Awaitable[T]) -> T:
    """The result of ``awaitable`` within ``timeout_s`` (TimeoutError past it; the awaitable
    is then cancelled). A cancellation of the caller always raises here, even when the
    result arrives in the same loop turn; the inner task is then cancelled and left to end."""
    inner = asyncio.ensure_future(awaitable)
    inner.add_done_callback(_retrieve)
    try:
        done, _ = await asyncio.wait({inner}, timeout=timeout_s)
    except asyncio.CancelledError:
        inner.cancel()
        raise
    if not done:
        inner.cancel()
        raise TimeoutError(f"no result within {timeout_s:g} s")
    return inner.result()


def _wake(sleeper: asyncio.Future[None]) -> None:
    if not sleeper.done():
        sleeper.set_result(None)


def _retrieve(task: asyncio.Future[T]) -> None:
    """Mark an abandoned task's exception as seen (no 'never retrieved' noise)."""
    if not task.cancelled():
        task.exception()
