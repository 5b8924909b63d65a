"""The one back-off every retry loop waits by: exponential growth under a cap, with full jitter.

Retry number `retry` (0-based) waits a time drawn uniformly from [0, ceiling], where the ceiling
is min(cap, base * 2**retry). Full jitter spreads out callers that failed together (after an
outage they do not all come back at once) while the ceiling still grows per retry; an upper bound
on the waits (a deadline, a timeout) is the sum of the ceilings. No I/O lives here.
"""

from __future__ import annotations

import random

__all__ = ["backoff_ceiling", "full_jitter"]

#: Past this many doublings every ceiling is the cap anyway; it keeps 2**retry a small float.
_MAX_DOUBLINGS = 62


def backoff_ceiling(retry: int, base_s: float, cap_s: float) -> float:
    """The longest wait before retry number `retry` (0-based): min(cap, base * 2**retry)."""
    return min(cap_s, base_s * 2.0 ** min(max(retry, 0), _MAX_DOUBLINGS))


def full_jitter(retry: int, base_s: float, cap_s: float, rng: random.Random | None = None) -> float:
    """The wait before retry number `retry` (0-based): uniform in [0, `backoff_ceiling`].

    `rng` makes the draw reproducible (tests pass a seeded one); None uses the `random` module.
    """
    uniform = random.uniform if rng is None else rng.uniform
    return uniform(0.0, backoff_ceiling(retry, base_s, cap_s))
