from __future__ import annotations

from ingest.sequences import SequenceTracker


def test_a_hole_becomes_a_gap_only_after_the_grace_period() -> None:
    t = SequenceTracker(grace_s=10)
    for seq in (1, 2, 5):
        t.observe("gw", "s1", seq, 0.0)
    assert (t.gaps, t.open_holes) == (0, 2)
    t.observe("gw", "s1", 3, 1.0)  # late but within the grace period
    assert (t.late, t.open_holes) == (1, 1)
    assert t.expire(5.0) == 0
    assert t.expire(10.0) == 1
    assert (t.gaps, t.open_holes) == (1, 0)


def test_duplicates_and_sessions_are_counted_separately() -> None:
    t = SequenceTracker(grace_s=0)
    for gw, session, seq in [("a", "s1", 1), ("a", "s1", 2), ("a", "s1", 2), ("b", "s1", 1),
                             ("a", "s2", 1), ("a", "s1", 1)]:
        t.observe(gw, session, seq, 0.0)
    t.expire(0.0)
    assert (t.duplicates, t.gaps) == (2, 0)


def test_memory_is_bounded() -> None:
    t = SequenceTracker(grace_s=100, max_holes=10, max_sessions=2)
    t.observe("gw", "s", 1, 0.0)
    t.observe("gw", "s", 1000, 0.0)  # a jump larger than max_holes is counted at once
    assert (t.gaps, t.open_holes) == (998, 0)
    t.observe("gw", "s", 1003, 0.0)
    t.observe("gw", "s2", 1, 0.0)
    t.observe("gw", "s3", 1, 0.0)  # forgets the least recently seen session, counting holes
    assert t.gaps == 1000
