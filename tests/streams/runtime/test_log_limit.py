"""Repeated log lines: one per cause per interval, the held-back ones counted in the next."""

from __future__ import annotations

import logging

import pytest

from streams.runtime.log_limit import RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def limited(caplog: pytest.LogCaptureFixture) -> tuple[Clock, pytest.LogCaptureFixture]:
    clock = Clock()
    repeat_filter = RepeatFilter(interval_s=30.0, clock=clock)
    caplog.handler.addFilter(repeat_filter)
    caplog.set_level(logging.INFO)
    return clock, caplog


def test_one_line_per_cause_per_interval_with_a_count(
    limited: tuple[Clock, pytest.LogCaptureFixture],
) -> None:
    clock, caplog = limited
    kafka = logging.getLogger("aiokafka.conn")
    for second in range(100):
        clock.now = second * 0.5  # 100 failures in 50 s
        kafka.error("Unable connect to node with id %s: %s", 1, f"refused #{second}")
    kafka.warning("Coordinator dead")  # another cause passes at once
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "Unable connect to node with id 1: refused #0",
        "Unable connect to node with id 1: refused #60 (59 more like this in the last 30 s)",
        "Coordinator dead",
    ]


def test_other_loggers_are_not_limited(limited: tuple[Clock, pytest.LogCaptureFixture]) -> None:
    _, caplog = limited
    splitter = logging.getLogger("streams.split_agent")
    for n in range(5):
        splitter.info("split %s: %d page records handed to Kafka", f"doc{n}", 3)
    assert len(caplog.records) == 5
