from __future__ import annotations

from ingest.counters import Counters, WarningLimiter


def test_limiter_shows_first_then_one_per_interval_and_counts_the_rest() -> None:
    lim = WarningLimiter(interval_s=60)
    assert lim.due("payload", 0.0)
    assert not lim.due("payload", 10.0)
    assert not lim.due("payload", 59.0)
    assert lim.due("topic", 59.0)  # kinds are limited separately
    assert lim.take_suppressed("payload") == 2
    assert lim.take_suppressed("payload") == 0
    assert lim.due("payload", 60.0)


def test_summary_names_every_counter_and_dead_letter_kind() -> None:
    c = Counters(messages_in=5, rows_written=40, dead_letters=2, batches=3,
                 redeliveries_ignored=8, dead_letters_by_kind={"topic": 1, "payload": 1})
    text = c.summary()
    for part in ("messages in 5", "rows written 40", "batches 3", "dead letters 2",
                 "payload 1", "topic 1", "redeliveries ignored 8"):
        assert part in text


def test_snapshot_changes_when_a_counter_changes() -> None:
    c = Counters()
    before = c.snapshot()
    c.dead_letters_by_kind["value"] = 1
    assert c.snapshot() != before
