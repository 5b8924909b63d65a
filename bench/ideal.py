"""The dependency-aware ideal: how soon a perfect scheduler on the GPU's C slots finishes the
model calls some documents need, with the test double's service times.

With the cross-page merge on, C / mean service time is no longer reachable: a merge detection
for pages (p, p+1) waits for both page calls, and a table merge for its page pair's detection
and, in a chain (a table over three or more pages), for the link after it (the protocol merges
a chain from its last page pair to its first; separate chains may run concurrently). Every page
call is ready at time 0.

The calls are the ones the direct driver makes, found with the drivers' own rules
(`pairs_to_detect`, `table_merge_chains`); the benchmarks check their number, by kind, against
what the double counted for the direct driver. The scheduler knows the dependencies, not the
service times: each is drawn from the double's seeded `ServiceTime` when its call starts. Among
the calls ready when a slot frees it starts the one with the most calls still chained behind
it (highest level first), then the one ready first.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ocrflux.document import pairs_to_detect
from ocrflux.engines.base import Pair
from ocrflux.merge import table_merge_chains
from schemas.results import PageResult
from tests.fakes.gpu import ServiceTime

KINDS = ("page", "detect", "table_merge")


@dataclass(frozen=True, slots=True)
class Call:
    """One model call: its kind, document, page (the first page of a pair) and the calls (by
    index in the same list) it waits for."""

    kind: str
    doc: int
    page: int
    after: tuple[int, ...] = ()


def add_document(
    calls: list[Call],
    pages: Sequence[Sequence[str] | None],
    pairs: Mapping[int, Sequence[Pair]],
    *,
    merge: bool = True,
    tables_after_detections: bool = False,
) -> None:
    """Append one document's calls. `pages[p]` is page p's elements as the model answers them
    (`[]` for a blank page, None for a page that fails); `pairs[p]` what detection answers for
    pages (p, p+1). With `tables_after_detections` every table merge also waits for all of the
    document's detections, as both drivers schedule them today (the chains are known then)."""
    doc = 1 + max((call.doc for call in calls), default=-1)
    page_call = {}
    for index in range(len(pages)):
        page_call[index] = len(calls)
        calls.append(Call("page", doc, index))
    if not merge:
        return
    done = {
        p: PageResult(index=p, elements=list(e or []), fallback=e is None)
        for p, e in enumerate(pages)
    }
    firsts = sorted({first for p in done for first in pairs_to_detect(done, p)})
    detect_call = {}
    for first in firsts:
        detect_call[first] = len(calls)
        calls.append(Call("detect", doc, first, (page_call[first], page_call[first + 1])))
    detected = {first: pairs[first] for first in firsts if pairs.get(first)}
    every = tuple(detect_call.values()) if tables_after_detections else ()
    for chain in table_merge_chains(pages, detected):
        previous: tuple[int, ...] = ()
        for link in chain:  # the last page pair first
            after = tuple(dict.fromkeys((detect_call[link.page], *every, *previous)))
            calls.append(Call("table_merge", doc, link.page, after))
            previous = (len(calls) - 1,)


def counts(calls: Sequence[Call]) -> dict[str, int]:
    """Calls by kind (the double's `by_task` names)."""
    found = Counter(call.kind for call in calls)
    return {kind: found[kind] for kind in KINDS if found[kind]}


def _levels(calls: Sequence[Call]) -> list[int]:
    """For each call, the longest chain of calls that waits on it (itself included)."""
    level = [1] * len(calls)
    for index in range(len(calls) - 1, -1, -1):  # every call comes after what it waits for
        for before in calls[index].after:
            level[before] = max(level[before], level[index] + 1)
    return level


def schedule(calls: Sequence[Call], capacity: int, service: ServiceTime) -> list[float]:
    """Each call's finish time under the perfect scheduler (see the module docstring)."""
    if capacity < 1:
        raise ValueError("capacity must be >= 1")
    draws = ServiceTime(service.mean, service.jitter, service.seed)
    level = _levels(calls)
    waiting = [len(call.after) for call in calls]
    dependents: list[list[int]] = [[] for _ in calls]
    for index, call in enumerate(calls):
        for before in call.after:
            dependents[before].append(index)
    ready = [(-level[i], 0.0, i) for i, call in enumerate(calls) if not call.after]
    heapq.heapify(ready)
    running: list[tuple[float, int]] = []
    finished = [0.0] * len(calls)
    now = 0.0
    while ready or running:
        while ready and len(running) < capacity:
            _, _, index = heapq.heappop(ready)
            heapq.heappush(running, (now + draws.draw(), index))
        now = running[0][0]
        while running and running[0][0] <= now:  # every call that ends now frees its slot
            _, index = heapq.heappop(running)
            finished[index] = now
            for after in dependents[index]:
                waiting[after] -= 1
                if not waiting[after]:
                    heapq.heappush(ready, (-level[after], now, after))
    return finished


def makespan(calls: Sequence[Call], capacity: int, service: ServiceTime) -> float:
    """Seconds until the perfect scheduler has finished every call."""
    return max(schedule(calls, capacity, service), default=0.0)


def lower_bound(calls: Sequence[Call], capacity: int, mean: float) -> float:
    """No scheduler finishes sooner (exact service times): the work spread over every slot, or
    the longest chain of calls one after the other, whichever is longer."""
    if not calls:
        return 0.0
    return max(len(calls) * mean / capacity, max(_levels(calls)) * mean)
