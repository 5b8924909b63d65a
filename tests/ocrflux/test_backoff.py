"""The shared back-off: full jitter under a doubling, capped ceiling (no servers)."""

from __future__ import annotations

import random

import pytest

from ocrflux.backoff import backoff_ceiling, full_jitter


@pytest.mark.parametrize(
    ("retry", "ceiling"),
    [(0, 0.25), (1, 0.5), (2, 1.0), (5, 8.0), (6, 10.0), (500, 10.0), (10**6, 10.0)],
)
def test_the_ceiling_doubles_per_retry_up_to_the_cap(retry: int, ceiling: float) -> None:
    assert backoff_ceiling(retry, 0.25, 10.0) == ceiling


def test_delays_spread_over_the_whole_range_under_the_ceiling() -> None:
    rng = random.Random(1)
    for retry in (0, 1, 2, 5, 6, 500):
        ceiling = backoff_ceiling(retry, 0.25, 10.0)
        delays = [full_jitter(retry, 0.25, 10.0, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert min(delays) < ceiling / 4 and max(delays) > ceiling * 3 / 4  # full, not equal


def test_delays_grow_with_the_retry_number() -> None:
    rng = random.Random(2)
    means = [
        sum(full_jitter(retry, 0.5, 60.0, rng) for _ in range(500)) / 500 for retry in range(5)
    ]
    assert means == sorted(means)
    assert means[4] > 4 * means[0]


def test_a_seeded_rng_gives_the_same_delays() -> None:
    first = [full_jitter(n, 1.0, 30.0, random.Random(42)) for n in range(8)]
    again = [full_jitter(n, 1.0, 30.0, random.Random(42)) for n in range(8)]
    assert first == again
    rng = random.Random(42)
    assert full_jitter(3, 1.0, 30.0, rng) == random.Random(42).uniform(0.0, 8.0)


def test_without_an_rng_the_random_module_draws() -> None:
    state = random.getstate()
    try:
        random.seed(5)
        drawn = full_jitter(2, 1.0, 30.0)
        random.seed(5)
        assert drawn == random.uniform(0.0, 4.0)
    finally:
        random.setstate(state)


def test_a_cap_below_the_base_wins() -> None:
    assert backoff_ceiling(0, 5.0, 1.0) == 1.0
    assert 0 <= full_jitter(0, 5.0, 1.0, random.Random(0)) <= 1.0
