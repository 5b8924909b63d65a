"""Commit positions when records finish out of order."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.runtime.offsets import OffsetTracker


def test_position_waits_for_the_lowest_record_in_hand() -> None:
    tracker = OffsetTracker()
    for offset in (10, 11, 12):
        tracker.started(0, offset)
    tracker.finished(0, 12)
    tracker.finished(0, 11)
    assert tracker.commit_position(0) == 10  # 10 is still being processed
    tracker.finished(0, 10)
    assert tracker.commit_position(0) == 13
    tracker.committed(0, 13)
    assert tracker.commit_position(0) is None  # nothing new


def test_compaction_gaps_and_partitions_are_independent() -> None:
    tracker = OffsetTracker()
    tracker.started(0, 5)
    tracker.started(0, 9)  # 6..8 compacted away
    tracker.started(1, 0)
    tracker.finished(0, 5)
    tracker.finished(0, 9)
    assert tracker.commit_position(0) == 10
    assert tracker.commit_position(1) == 0
    assert tracker.in_flight(1) == 1


def test_dropped_partition_ignores_late_finishes() -> None:
    tracker = OffsetTracker()
    tracker.started(3, 1)
    tracker.drop(3)
    tracker.finished(3, 1)
    assert tracker.commit_position(3) is None and tracker.partitions() == []


@given(st.permutations(list(range(30))), st.integers(min_value=0, max_value=29))
def test_never_commits_past_an_unfinished_record(order: list[int], unfinished: int) -> None:
    tracker = OffsetTracker()
    for offset in range(30):
        tracker.started(0, offset)
    for offset in order:
        if offset != unfinished:
            tracker.finished(0, offset)
        position = tracker.commit_position(0)
        assert position is not None and position <= unfinished
