"""The dependency-aware ideal (bench/ideal.py): which calls a document needs, and how soon a
perfect scheduler on C slots finishes them."""

from __future__ import annotations

import pytest

from bench import ideal
from bench.ideal import Call
from tests.fakes.gpu import ServiceTime

T = "<table><tr><td>x</td></tr></table>"


def _calls(pages: list[list[str] | None], pairs: dict[int, list[tuple[int, int]]]) -> list[Call]:
    calls: list[Call] = []
    ideal.add_document(calls, pages, pairs)
    return calls


def test_a_table_over_three_pages_is_two_chained_merges_after_their_detections() -> None:
    calls = _calls([["a", T], [T], [T, "b"], ["c"]], {0: [(1, 0)], 1: [(0, 0)]})
    assert ideal.counts(calls) == {"page": 4, "detect": 3, "table_merge": 2}
    detect = {c.page: i for i, c in enumerate(calls) if c.kind == "detect"}
    last, first = [c for c in calls if c.kind == "table_merge"]
    assert last.page == 1 and last.after == (detect[1],)
    assert first.page == 0 and first.after == (detect[0], calls.index(last))


def test_blank_and_failed_pages_have_no_detection_and_text_pairs_no_table_merge() -> None:
    calls = _calls([["a"], [], ["b"], None, ["c"], ["d"]], {4: [(0, 0)]})
    assert ideal.counts(calls) == {"page": 6, "detect": 1}
    assert [c.page for c in calls if c.kind == "detect"] == [4]


def test_without_the_merge_only_pages() -> None:
    calls: list[Call] = []
    ideal.add_document(calls, [["a"], ["b"]], {}, merge=False)
    ideal.add_document(calls, [["c"]], {}, merge=False)
    assert [(c.kind, c.doc) for c in calls] == [("page", 0), ("page", 0), ("page", 1)]


def test_one_page_wave_one_detection_wave_then_the_chain() -> None:
    pages: list[list[str] | None] = [["p"], ["q", T], [T], [T], ["r"], ["s"], ["t"], ["u"]]
    calls = _calls(pages, {1: [(1, 0)], 2: [(0, 0)]})
    assert ideal.makespan(calls, 8, ServiceTime(0.25)) == pytest.approx(1.0)
    assert ideal.lower_bound(calls, 8, 0.25) == pytest.approx(1.0)


def test_work_bound_when_slots_are_few() -> None:
    calls: list[Call] = []
    for _ in range(4):
        ideal.add_document(calls, [["a"], ["b"], ["c"], ["d"]], {})
    assert ideal.counts(calls) == {"page": 16, "detect": 12}
    assert ideal.lower_bound(calls, 4, 1.0) == pytest.approx(7.0)
    assert ideal.makespan(calls, 4, ServiceTime(1.0)) == pytest.approx(7.0)


def test_the_scheduler_starts_the_longest_chain_first() -> None:
    # Pages 4 and 5 head the chain page -> detection (4, 5) -> merge (4, 5) -> merge (3, 4);
    # with two slots they go first, and 13 calls end in 7 waves, none idle but the last.
    pages: list[list[str] | None] = [["a"], ["b"], ["c"], [T], [T], [T]]
    calls = _calls(pages, {3: [(0, 0)], 4: [(0, 0)]})
    finished = ideal.schedule(calls, 2, ServiceTime(1.0))
    assert [calls[i].page for i, end in enumerate(finished) if end == 1.0] == [4, 5]
    assert max(finished) == pytest.approx(7.0)


def test_seeded_service_times_are_repeatable_and_never_beat_the_bound() -> None:
    calls: list[Call] = []
    for _ in range(10):
        ideal.add_document(calls, [["a", T], [T], [T], ["d"]], {0: [(1, 0)], 1: [(0, 0)]})
    service = ServiceTime(1.0, 0.2, 8)
    once = ideal.makespan(calls, 8, service)
    assert once == ideal.makespan(calls, 8, service)
    assert once >= ideal.lower_bound(calls, 8, 0.8)
    assert len(ideal.schedule(calls, 8, service)) == len(calls)


def test_table_merges_after_every_detection_as_the_drivers_schedule_them() -> None:
    pages: list[list[str] | None] = [["a", T], [T], ["b"], ["c"]]
    calls: list[Call] = []
    ideal.add_document(calls, pages, {0: [(1, 0)]}, tables_after_detections=True)
    detections = tuple(i for i, c in enumerate(calls) if c.kind == "detect")
    [merge] = [c for c in calls if c.kind == "table_merge"]
    assert merge.after == detections  # its own detection first, then the others, once each
    assert ideal.counts(calls) == ideal.counts(_calls(pages, {0: [(1, 0)]}))
