"""The event hub's bookkeeping, without a database: who gets which event, what a resume is
served from (memory or the database), what happens to a backlog that overflows, and that
closing ends every stream. (Reading the outbox and the streams over HTTP:
tests/integration/test_api_stream*.py.)"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from api.event_hub import Event, EventHub, HubLimits, Subscription
from facility.scope import Scope

TOKEN = b"t" * 32


def _hub(backlog: int = 10, replay: int = 10) -> EventHub:
    return EventHub("postgresql://unused/unused", cast(Any, None),
                    HubLimits(heartbeat_s=1.0, backlog=backlog, replay=replay))


def _publish(hub: EventHub, *ids: int, site: str = "a", building: str | None = None) -> None:
    for event_id in ids:
        hub.publish(Event(event_id, site, building, f"id: {event_id}\n\n".encode()))


def _ids(sub: Subscription) -> list[int]:
    return [e.id for e in sub.take()]


def test_a_subscription_gets_every_later_event_of_its_site_once() -> None:
    hub = _hub()
    _publish(hub, 1, 2)
    everything = hub.subscribe(None, None, TOKEN)
    only_a = hub.subscribe(None, "a", TOKEN)
    only_b = hub.subscribe(None, "b", TOKEN)
    assert everything.start == only_a.start == 2  # 'now'
    _publish(hub, 3, site="a")
    _publish(hub, 4, site="b")
    assert (_ids(everything), _ids(only_a), _ids(only_b)) == ([3, 4], [3], [4])
    _publish(hub, 5)
    assert (_ids(everything), _ids(only_a), _ids(only_b)) == ([5], [5], [])


def test_a_scoped_subscription_gets_only_its_estates_events_live_and_replayed() -> None:
    """Issue 23: a user of site a, or of building x of site b, hears nothing else."""
    hub = _hub()
    site_a = hub.subscribe(None, None, TOKEN, Scope.of(["a"]))
    building_x = hub.subscribe(None, None, TOKEN, Scope.of(["b/x"]))
    _publish(hub, 1, site="a", building="1")
    _publish(hub, 2, site="b", building="x")
    _publish(hub, 3, site="b", building="y")
    _publish(hub, 4, site="b")  # about site b as a whole
    assert (_ids(site_a), _ids(building_x)) == ([1], [2])
    replayed = hub.subscribe(0, None, TOKEN, Scope.of(["b/x", "a"]))
    assert _ids(replayed) == [1, 2]


def test_a_resume_within_the_replay_is_served_from_memory_an_older_one_from_the_database(
) -> None:
    hub = _hub(replay=3)
    _publish(hub, 1, 2, 3, 4, 5)  # memory holds 3, 4, 5
    recent = hub.subscribe(2, None, TOKEN)
    assert recent.catch_up_to is None and _ids(recent) == [3, 4, 5]
    other_site = hub.subscribe(2, "b", TOKEN)
    assert other_site.catch_up_to is None and _ids(other_site) == []
    old = hub.subscribe(1, None, TOKEN)
    assert old.catch_up_to == 5 and _ids(old) == []  # (1, 5] from the database, then live
    _publish(hub, 6)
    assert _ids(old) == [6] and _ids(recent) == [6]


def test_a_full_backlog_is_dropped_counted_and_resumed_from_the_last_id_sent() -> None:
    hub = _hub(backlog=2, replay=10)
    slow = hub.subscribe(None, None, TOKEN)
    quick = hub.subscribe(None, None, TOKEN)
    _publish(hub, 1, 2)
    assert _ids(quick) == [1, 2]
    _publish(hub, 3)  # the slow one has not taken 1 and 2
    assert slow.overflowed and _ids(slow) == []
    assert hub.counters.overflows == 1 and hub.streams == 1
    _publish(hub, 4)
    assert _ids(quick) == [3, 4] and _ids(slow) == []  # no longer fed
    again = hub.subscribe(0, None, TOKEN)  # what the stream does, from its last id
    assert _ids(again) == [1, 2, 3, 4]


async def test_closing_ends_every_subscription_and_any_later_one() -> None:
    hub = _hub()
    subs = [hub.subscribe(None, site, TOKEN) for site in (None, "a", "b")]
    await hub.close()
    assert [s.ended for s in subs] == ["closing"] * 3 and hub.streams == 0
    assert hub.subscribe(None, None, TOKEN).ended == "closing"
    _publish(hub, 1)
    assert [_ids(s) for s in subs] == [[], [], []]


async def test_a_waiting_stream_wakes_once_the_hub_has_handed_out_the_events() -> None:
    hub = _hub()
    subs = [hub.subscribe(None, None, TOKEN) for _ in range(45)]  # more than one slice
    waiting = [asyncio.create_task(s.wait(60)) for s in subs]
    await asyncio.sleep(0)  # every stream is now waiting
    _publish(hub, 1, 2)
    await hub.wake_streams()
    assert await asyncio.gather(*waiting) == [True] * 45
    assert [_ids(s) for s in subs] == [[1, 2]] * 45
