"""`make reliability` never hides a failure: a row that loses a document, keeps a differing
duplicate, degrades a result in an outage, grows past the memory bound or misses its own
expectation is marked MISSED in RELIABILITY.md, with its reason, in the summary and the
evidence section; and a bad-input answer counts only when it is one of the kind's outcomes."""

from __future__ import annotations

import time

import pytest

from bench.reliability.bad_input_run import KindResult, Seen, matches
from bench.reliability.bad_inputs import BadInput, Outcome
from bench.reliability.markdown import render
from bench.reliability.rows import MEMORY_BOUND_MIB, Row


def _row(**counts: object) -> Row:
    row = Row(group="Delivery", case="a case", driver="stream", expected="all complete")
    row.submitted = 8
    row.completed = 8
    row.peak_rss_mib = {"worker": 240.0}
    for name, value in counts.items():
        setattr(row, name, value)
    return row


def _markdown(rows: list[Row], kinds: list[KindResult] | None = None) -> str:
    return render(
        rows, kinds or [], started=time.time(), kafka_version="4.1.1", load_before="-", notes=[]
    )


def test_a_row_that_meets_everything_holds() -> None:
    row = _row(duplicated=2)  # replays that are byte-identical are allowed
    assert row.holds
    text = _markdown([row])
    assert "1 of 1 rows hold." in text
    assert "**MISSED**:" not in text
    assert "| holds |" in text
    assert "2 (byte-identical)" in text


@pytest.mark.parametrize(
    ("counts", "reason"),
    [
        ({"lost": 1, "completed": 7}, "1 lost"),
        ({"duplicated": 1, "differing": 1}, "1 differing duplicates"),
        ({"degraded_by_outage": 2}, "2 degraded by an outage"),
        ({"peak_rss_mib": {"worker": MEMORY_BOUND_MIB + 1}}, "memory over"),
    ],
)
def test_each_part_of_the_goal_is_checked_and_shown(counts: dict[str, object], reason: str) -> None:
    row = _row(**counts)
    row.evidence = "2026-12-02 WARNING streams.recognize: the log line that shows it"
    assert not row.holds
    text = _markdown([row, _row()])
    assert "1 of 2 rows hold. Rows that miss: a case (stream)." in text
    assert f"**MISSED**: {reason}" in text
    assert "## Evidence for the rows that miss" in text
    assert "the log line that shows it" in text


def test_a_missed_expectation_is_shown_with_its_reason() -> None:
    row = _row()
    row.miss("expected 4 partial and 4 failed; got 8 completed")
    assert not row.holds
    assert "**MISSED**: expected 4 partial and 4 failed; got 8 completed" in _markdown([row])


def test_bad_input_answers_are_matched_on_status_code_and_warning() -> None:
    repaired = BadInput(
        "truncated", b"t.pdf", lambda: b"", (Outcome("completed", warning="repaired"),)
    )
    corrupt = BadInput("garbage", b"g.pdf", lambda: b"", (Outcome("failed", "corrupt"),))
    assert matches(Outcome("completed", None, "repaired"), ["repaired"], repaired)
    assert not matches(Outcome("completed"), [], repaired)  # the warning is missing
    assert matches(Outcome("failed", "corrupt"), [], corrupt)
    assert not matches(Outcome("failed", "unsupported_type"), [], corrupt)
    assert not matches(None, [], corrupt)  # no answer at all
    # The API's guide-shaped 200 names no code for a partial result, but a failure's code counts.
    partial = BadInput("cut", b"c.pdf", lambda: b"", (Outcome("partial", "damaged_page"),))
    assert matches(Outcome("partial"), [], partial, codes_shown=False)
    assert not matches(Outcome("failed", "bad_request"), [], corrupt, codes_shown=False)


def test_the_kind_table_marks_a_driver_that_answered_wrongly() -> None:
    kind = BadInput("HTML page", b"p.html", lambda: b"", (Outcome("failed", "unsupported_type"),))
    result = KindResult(kind)
    result.seen["convert"] = Seen(Outcome("failed", "unsupported_type"), "exit 1", True)
    result.seen["API"] = Seen(Outcome("failed", "bad_request"), "HTTP 400, bad_request", False)
    text = _markdown([_row()], [result])
    assert (
        "| HTML page | failed unsupported_type | exit 1 | HTTP 400, bad_request **MISSED** |"
        in (text)
    )
