"""The stop signal and the cancellation-safe timeout (facility.stopping): the 3.11
``asyncio.wait_for`` race that kept a gateway polling after SIGINT (issue 17), replayed
with futures and no I/O."""

from __future__ import annotations

import asyncio
import sys

import pytest

from facility.stopping import Stopping, wind_down, within


async def _turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def _request(response: asyncio.Future[str]) -> str:
    """A library request as pymodbus writes it: wait_for on the response future."""
    return await asyncio.wait_for(response, timeout=60)


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="wait_for was fixed in 3.12")
async def test_the_race_itself_wait_for_loses_a_cancellation_that_meets_the_response() -> None:
    response: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(_request(response))
    await _turns()
    task.cancel()
    response.set_result("pdu")  # lands in the same loop turn as the cancellation
    assert await task == "pdu"  # the cancellation is gone: a loop around it goes on


async def test_within_raises_the_callers_cancellation_even_when_the_response_meets_it() -> None:
    response: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(within(5, _request(response)))
    await _turns()
    task.cancel()
    response.set_result("pdu")
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_within_returns_the_result_and_times_out() -> None:
    response: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    response.set_result("pdu")
    assert await within(5, _request(response)) == "pdu"
    never: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    with pytest.raises(TimeoutError):
        await within(0.01, _request(never))
    await _turns()
    assert never.cancelled()  # the abandoned request was cancelled


async def test_sleep_and_until_end_at_the_stop_signal() -> None:
    stopping = Stopping()
    arrived = asyncio.Event()
    sleeper = asyncio.create_task(stopping.sleep(3600))
    waiter = asyncio.create_task(stopping.until(arrived))
    await _turns()
    assert not sleeper.done() and not waiter.done()
    stopping.set("SIGTERM")
    assert await sleeper is True and await waiter is True
    assert stopping.reason == "SIGTERM"
    assert await Stopping().until(_set(asyncio.Event())) is False


def _set(event: asyncio.Event) -> asyncio.Event:
    event.set()
    return event


async def test_a_cancelled_group_sets_the_stop_signal_so_a_swallowing_loop_still_ends() -> None:
    stopping = Stopping()
    polls = 0

    async def loop_that_loses_its_cancellation() -> None:
        nonlocal polls
        while not await stopping.sleep(0):
            polls += 1
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                pass  # what wait_for did: the cancellation is swallowed

    async def service() -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(stopping.watch_cancel())
            tg.create_task(loop_that_loses_its_cancellation())

    task = asyncio.create_task(service())
    await _turns(10)
    task.cancel()
    async with asyncio.timeout(5):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert stopping.reason == "cancelled" and polls > 0


async def test_wind_down_recancels_a_task_that_lost_its_cancellation_then_ends_the_rest() -> None:
    stopping = Stopping()
    cancels = 0

    async def stubborn() -> None:
        nonlocal cancels
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancels += 1
                if cancels == 2:
                    raise

    async def forever() -> None:
        await asyncio.sleep(3600)

    async with asyncio.timeout(10), asyncio.TaskGroup() as tg:
        first = tg.create_task(stubborn())
        then = tg.create_task(forever())
        tg.create_task(wind_down(stopping, [first], [then], grace_s=0.0))
        await _turns()
        stopping.set()
    assert cancels == 2 and first.cancelled() and then.cancelled()


def test_salvage_runs_every_last_save_even_after_one_fails() -> None:
    stopping = Stopping()
    saved: list[str] = []

    def broken() -> None:
        raise OSError("disk full")

    stopping.on_overdue("first", broken)
    stopping.on_overdue("second", lambda: saved.append("second"))
    stopping.salvage()
    assert saved == ["second"]
