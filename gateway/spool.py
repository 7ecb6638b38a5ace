"""The gateway's spool: messages the broker has not acknowledged, on their way to the on-disk
queue (``gateway.buffer.MessageStore``) and back. ``add`` appends to an in-memory batch that
the flusher writes to the SQLite file in one transaction every ``flush_interval_s`` on one
dedicated thread (every store call runs there, shielded: cancelling a caller at a stop must
not cancel a job queued behind another, or the batch it appends would be lost).

A disk that refuses a write (full, read-only, I/O error) loses nothing already held: the
batch stays in memory (bounded by ``max_memory``, bulk dropped oldest first and counted), is
replayed from there, and the write is retried every ``DISK_RETRY_S``; it is logged once and
its recovery once, and the counters' ``unstored`` counts the messages held in memory instead
of on disk. Rows replayed and acknowledged whose deletion the disk refused are skipped until
they can be deleted, so they are never replayed twice by this process."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from gateway.buffer import MessageStore, Outgoing, Stored
from gateway.counters import GatewayCounters

log = logging.getLogger(__name__)
T = TypeVar("T")

DISK_RETRY_S = 5.0


class Spool:
    def __init__(self, store: MessageStore, counters: GatewayCounters, *,
                 flush_interval_s: float, max_memory: int) -> None:
        self._store = store
        self._counters = counters
        self._flush_interval_s = flush_interval_s
        self._max_memory = max_memory
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-buffer")
        self.pending: list[Outgoing] = []  # spooled, not on disk yet (or the disk refused)
        self._spooled = asyncio.Event()
        self._lock = asyncio.Lock()
        self._disk_ok = True
        self._undeleted: list[Stored] = []  # replayed and acknowledged; the disk refused
        self._skip: set[int] = set()  # ... their deletion: not replayed again

    @property
    def path(self) -> Path:
        return self._store.path

    @property
    def depth(self) -> int:
        """Messages queued (on disk or in memory) and not yet acknowledged."""
        return self._store.count - len(self._skip) + len(self.pending)

    def add(self, messages: list[Outgoing], *, first: bool = False) -> None:
        """Spool messages (``first``: ahead of those waiting, to keep their order)."""
        if first:
            self.pending[:0] = messages
        else:
            self.pending.extend(messages)
        self._spooled.set()
        if not self._disk_ok:
            self._counters.unstored += len(messages)
            self._bound_memory()

    def _bound_memory(self) -> None:
        """While the disk refuses writes: drop the oldest bulk messages past ``max_memory``."""
        over = len(self.pending) - self._max_memory
        if over <= 0:
            return
        kept: list[Outgoing] = []
        for m in self.pending:
            if over > 0 and not m.critical:
                over -= 1
                self._counters.dropped += 1
            else:
                kept.append(m)
        self.pending = kept

    async def flush_forever(self) -> None:
        while True:
            if self._disk_ok:
                await self._spooled.wait()
                self._spooled.clear()
                await asyncio.sleep(self._flush_interval_s)  # gather a batch
            else:
                await asyncio.sleep(DISK_RETRY_S)
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            await self._flush_pending()
            await self._delete_undeleted()

    async def _flush_pending(self) -> None:
        batch, self.pending = self.pending, []
        if not batch:
            return
        try:
            dropped = await self._run(self._store.append, batch)
        except sqlite3.Error as exc:
            self.pending[:0] = batch  # nothing lost: kept in memory, in order
            self._disk_refused(exc, len(batch))
            return
        self._disk_back(len(batch))
        if dropped:
            self._counters.dropped += dropped
            log.warning("queue full: dropped the %d oldest telemetry messages", dropped)

    def _disk_refused(self, exc: sqlite3.Error, held: int) -> None:
        if self._disk_ok:
            self._disk_ok = False
            self._counters.unstored += held
            log.error("cannot write the queue file %s (%s): holding %d messages in memory "
                      "(at most %d), publishing live, retrying every %.0f s", self._store.path,
                      exc, held, self._max_memory, DISK_RETRY_S)
        self._bound_memory()

    def _disk_back(self, stored: int) -> None:
        if not self._disk_ok:
            self._disk_ok = True
            log.info("queue file %s writable again: %d messages stored", self._store.path,
                     stored)

    async def _delete_undeleted(self) -> None:
        if not self._undeleted:
            return
        try:
            await self._run(self._store.delete, self._undeleted)
        except sqlite3.Error:
            return
        self._undeleted = []
        self._skip.clear()

    async def replay_batch(self, window: int) -> tuple[list[Stored], list[Outgoing]]:
        """The next rows to replay from disk, else (the disk refused them) from memory."""
        async with self._lock:
            if self._disk_ok:
                await self._flush_pending()
            rows = await self._disk_batch(window)
            return rows, ([] if rows else self.pending[:window])

    async def _disk_batch(self, window: int) -> list[Stored]:
        try:
            rows = await self._run(self._store.next_batch, window + len(self._skip))
        except sqlite3.Error as exc:
            log.warning("reading the queue file failed: %s", exc)
            return []
        return [r for r in rows if r.id not in self._skip][:window]

    async def delete(self, acked: list[Stored]) -> None:
        """Delete replayed rows the broker acknowledged (never replayed again, whatever the
        disk says)."""
        async with self._lock:
            try:
                await self._run(self._store.delete, acked)
            except sqlite3.Error as exc:
                self._undeleted += acked
                self._skip.update(r.id for r in acked)
                self._disk_refused(exc, 0)

    def forget(self, acked: list[Outgoing]) -> None:
        """Drop messages held in memory that the broker acknowledged."""
        done = {id(m) for m in acked}
        self.pending = [m for m in self.pending if id(m) not in done]

    async def close(self) -> None:
        """Store what is pending and close the store."""
        await self.flush()
        if self.pending:
            log.error("could not store %d unacknowledged messages in %s at shutdown: lost",
                      len(self.pending), self._store.path)
        await self._run(self._store.close)
        self._executor.shutdown(wait=True)

    def salvage(self, batch: list[Outgoing], timeout_s: float) -> None:
        """The last save of an overdue stop, synchronous: append ``batch`` and the in-memory
        batch on the buffer thread (waiting at most ``timeout_s`` for it)."""
        batch, self.pending = batch + self.pending, []
        try:
            if batch:
                self._executor.submit(self._store.append, batch).result(timeout_s)
            else:  # let an append in progress (close's) finish
                self._executor.submit(lambda: None).result(timeout_s)
        except RuntimeError:  # closed meanwhile: close spooled them
            if batch:
                raise

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        """Run ``fn`` on the buffer thread, shielded (see the module docstring)."""
        job = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        job.add_done_callback(_retrieve)
        return await asyncio.shield(job)


def _retrieve(job: asyncio.Future[T]) -> None:
    """Mark the outcome as seen: the caller, unless cancelled, has it raised too."""
    if not job.cancelled():
        job.exception()
