"""COV subscriptions of one BACnet device's objects over bacpypes3 (part of the gateway's
BACnet adapter, with gateway.bacnet).

One task per object subscribes with ``lifetime_s`` (unconfirmed notifications) and hands
every notified ``presentValue`` and ``statusFlags`` to the device's ``CovBook``.
bacpypes3 renews a subscription in a task of its own that nobody awaits: a renewal the
device refuses or does not answer would end there, unseen, while the gateway went on
believing the subscription held. So the task looks at that renewal every
``RENEWAL_CHECK_S`` and treats its failure like a refused subscription: the object is
polled from then on (``CovBook.unsubscribed``), the failure is logged once per device (the
book says when) and counted (``cov_failures``), and the subscription is tried again after a
capped, jittered backoff. No subscription task ends but by ``stop``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bacpypes3.apdu import ErrorRejectAbortNack
from bacpypes3.basetypes import PropertyIdentifier
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier

from gateway.bacnet_client import BacnetClient
from gateway.counters import GatewayCounters
from gateway.cov_book import CovBook

log = logging.getLogger(__name__)

RENEWAL_CHECK_S = 5.0  # a failed renewal noticed within this; offline comes from the polls


class CovLost(Exception):
    """A subscription's renewal failed (refused, or not answered)."""


class CovFollower:
    """Keeps the COV subscriptions of one device's objects, feeding its ``CovBook``."""

    def __init__(self, client: BacnetClient, device_id: str, book: CovBook[ObjectIdentifier],
                 address: Callable[[], Address], *, lifetime_s: int,
                 counters: GatewayCounters, names: Mapping[ObjectIdentifier, str]) -> None:
        self._client = client
        self._device_id = device_id
        self._book = book
        self._address = address
        self._lifetime_s = lifetime_s
        self._counters = counters
        self._names = names  # for the log: the point an object serves
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, objects: Iterable[ObjectIdentifier]) -> None:
        for objid in objects:
            self._tasks.append(asyncio.create_task(
                self._follow(objid), name=f"cov[{self._device_id}:{objid}]"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def _follow(self, objid: ObjectIdentifier) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with self._client.app.change_of_value(
                        self._address(), objid, None, False, self._lifetime_s) as sub:
                    self._changed(logging.INFO, self._book.subscribed(objid))
                    await self._receive(objid, sub)
                    raise CovLost("subscription ended")
            except asyncio.CancelledError:
                self._book.unsubscribed(objid)
                raise
            except (Exception, ErrorRejectAbortNack) as exc:  # a BaseException: named
                self._counters.cov_failures += 1
                wait, line = self._book.failed(
                    objid, _reason(exc), loop.time(),
                    label=f"{self._names.get(objid, '?')} ({objid})")
                self._changed(logging.WARNING, line)
                log.debug("%s: COV on %s failed (%r); polling it, again in %.0f s",
                          self._device_id, objid, exc, wait)
            await asyncio.sleep(wait)

    async def _receive(self, objid: ObjectIdentifier, sub: Any) -> None:
        """Hand notifications to the book until the subscription's renewal fails."""
        getter: asyncio.Future[Any] | None = None
        try:
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(sub.get_value())
                done, _ = await asyncio.wait({getter}, timeout=RENEWAL_CHECK_S)
                _check_renewal(sub)
                if getter in done:
                    prop, value = getter.result()
                    getter = None
                    self._notified(objid, prop, value)
        finally:
            if getter is not None:
                getter.cancel()

    def _notified(self, objid: ObjectIdentifier, prop: Any, value: Any) -> None:
        if prop == PropertyIdentifier.presentValue:
            self._counters.cov_notifications += 1
            self._book.notified(objid, value=value)
        elif prop == PropertyIdentifier.statusFlags:
            self._book.notified(objid, status_flags=tuple(int(b) for b in value))

    def _changed(self, level: int, line: str | None) -> None:
        if line is not None:
            log.log(level, "BACnet device %s: %s", self._device_id, line)


def _check_renewal(sub: Any) -> None:
    """Raise ``CovLost`` if bacpypes3's latest renewal of ``sub`` failed."""
    task = getattr(sub, "refresh_subscription_task", None)
    if task is None or not task.done():
        return
    if task.cancelled():
        raise CovLost("renewal cancelled")
    exc = task.exception()
    if exc is not None:
        raise CovLost(f"renewal failed: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, CovLost):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".removesuffix(": ")
