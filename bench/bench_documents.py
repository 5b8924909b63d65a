"""A stream of documents: 40 documents of 8 pages submitted at once, C=32, 1 s a call, through
the stream pipeline (workers already running) and, beside it, through one process converting
the 40 concurrently with the direct driver (`asyncio.gather` over `convert_document` on one
client: the way the reference client is used) (`python -m bench.bench_documents`).

Each document has a paragraph over pages 1-2 and a word hyphenated over pages 7-8
(bench/corpus.py without tables): 8 page calls and 7 detections, 600 calls in all, so the
lower bound is 600 x 1 s / 32 slots = 18.75 s; the dependency-aware ideal (bench/ideal.py) is
what a perfect scheduler reaches with the double's seeded service times. Both clients must
make exactly the calls the documents need, and every result must be the expected document.
The reference client (OCRFlux's own, measured for issue 16) took 37.9 s here; the goal is the
stream within 21 s (1.8x faster).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench import corpus, harness, ideal
from bench.harness import Broker
from bench.report import Section, Spread, goal, header, table
from schemas.options import ConversionOptions
from tests.fakes.gpu import ServiceTime

TITLE = "Stream pipeline: a stream of documents"
COMMAND = "python -m bench.bench_documents"
JITTER, SEED = 0.2, 8
REFERENCE_S = 37.9
GOAL_S = 21.0


@dataclass(frozen=True)
class Size:
    documents: int
    capacity: int
    service_s: float
    runs: int


FULL = Size(documents=40, capacity=32, service_s=1.0, runs=2)
QUICK = Size(documents=8, capacity=8, service_s=0.1, runs=1)
PAGES = corpus.GROUP


@dataclass
class Client:
    walls: list[float] = field(default_factory=list)
    requests: list[dict[str, int]] = field(default_factory=list)
    busy: list[float] = field(default_factory=list)  # the double's mean share of slots busy


def measure(broker: Broker, work: Path, quick: bool = False) -> Section:
    started = time.time()
    size = QUICK if quick else FULL
    documents = corpus.corpus(size.documents, PAGES, "docs", tables=False)
    warm = corpus.corpus(1, PAGES, "docs-warm", tables=False)
    data = [d.case.data for d in documents]
    calls = corpus.calls(documents)
    found = {"stream pipeline": Client(), "direct driver, all at once in one process": Client()}
    double = harness.start_double(
        work, capacity=size.capacity, service_time=size.service_s, jitter=JITTER, seed=SEED
    )
    try:
        corpus.register(double.control, [*documents, *warm])
        needed = harness.needed_requests(double, data, ConversionOptions())
        if needed != ideal.counts(calls):
            raise RuntimeError(f"the ideal counts {ideal.counts(calls)}, the driver {needed}")
        with harness.pipeline(broker, double, work, harness.SEPARATE, **harness.WORKER_ENV) as pipe:
            harness.run_batch(pipe, [warm[0].case.data], PAGES, ConversionOptions(), label="warm")
            for run in range(size.runs):
                stream, direct = found.values()
                harness.configure_double(double, size.capacity, size.service_s, JITTER, SEED)
                batch = harness.run_batch(
                    pipe, data, len(data) * PAGES, ConversionOptions(), label="docs"
                )
                check(documents, [result for _, result in batch.results.values()])
                stream.walls.append(batch.wall_s)
                stream.requests.append(harness.requests_by_kind(batch.double))
                stream.busy.append(batch.double["utilisation"])

                harness.wait_idle(double)
                harness.configure_double(double, size.capacity, size.service_s, JITTER, SEED)
                began = time.monotonic()
                results = asyncio.run(harness.direct_convert(double.url, data))
                direct.walls.append(time.monotonic() - began)
                check(documents, results)
                stats = double.control.stats()
                direct.requests.append(harness.requests_by_kind(stats))
                direct.busy.append(stats["utilisation"])
                print(
                    f"round {run + 1}: stream {stream.walls[-1]:.2f} s, "
                    f"direct {direct.walls[-1]:.2f} s",
                    file=sys.stderr,
                )
    finally:
        double.proc.stop()
    return report(found, needed, calls, size, broker, started, quick)


def check(documents: list[corpus.Document], results: Sequence[object]) -> None:
    for document, result in zip(documents, results, strict=True):
        text = getattr(result, "document_text", None)
        if text != document.expected:
            raise RuntimeError(f"{document.case.name}: the result is not the expected document")


def report(
    found: dict[str, Client],
    needed: dict[str, int],
    calls: list[ideal.Call],
    size: Size,
    broker: Broker,
    started: float,
    quick: bool,
) -> Section:
    bound = ideal.lower_bound(calls, size.capacity, size.service_s)
    best = ideal.makespan(calls, size.capacity, ServiceTime(size.service_s, JITTER, SEED))
    rows = []
    for name, client in found.items():
        walls = Spread.of(client.walls)
        same = all(r == needed for r in client.requests)
        rows.append(
            [
                name,
                walls.cell("{:.2f}"),
                Spread.of([bound / w for w in client.walls]).cell("{:.0f}%", 100),
                Spread.of([best / w for w in client.walls]).cell("{:.0f}%", 100),
                Spread.of([REFERENCE_S / w for w in client.walls]).cell("x{:.2f}"),
                Spread.of(client.busy).cell("{:.0f}%", 100),
                harness.kinds_cell(client.requests[-1], needed)
                + ("" if same else " (runs differ)"),
            ]
        )
    rows.append(["*lower bound (work / C)*", f"{bound:.2f}", "100%", "", "", "", ""])
    rows.append(["*dependency-aware ideal*", f"{best:.2f}", "", "100%", "", "", ""])
    stream = Spread.of(found["stream pipeline"].walls)
    met = stream.mid <= GOAL_S
    notes = [
        f"{size.documents} PDFs of {PAGES} different pages submitted at once, cross-page merge "
        f"on (a paragraph over pages 1-2, a word hyphenated over 7-8): "
        f"{harness.kinds_cell(needed)} model calls needed (the direct driver's count). Test "
        f"double: {size.capacity} slots, service time uniform in {size.service_s:g} s x (1 +- "
        f"{JITTER:.0%}), seed {SEED}, re-seeded before each client; {size.runs} rounds, the "
        "two clients in turn within each; every result checked against the expected document.",
        "Stream pipeline: split, recognize and assemble workers already running, timed from "
        "the first submit to the last result. Direct driver: `convert_document` for every "
        "document at once in this process (`asyncio.gather`, one HTTP client, 64 pages in "
        f"flight per document). Workers: {harness.worker_settings()}.",
        f"*vs reference*: the reference client's {REFERENCE_S} s for the same work (issue 16) "
        "over this time; *GPU slots busy*: the double's mean share of slots busy while it had "
        "work.",
    ]
    body = [
        header(COMMAND, broker.version, started, notes, quick=quick),
        "",
        table(
            [
                "client",
                "s",
                "of lower bound",
                "of ideal",
                "vs reference",
                "GPU slots busy",
                "requests",
            ],
            rows,
        ),
    ]
    goals = [
        (
            f"stream of documents ({size.documents} x {PAGES} pages, C={size.capacity}, "
            f"{size.service_s:g} s) <= {GOAL_S:g} s",
            f"{stream.mid:.2f} s (x{REFERENCE_S / stream.mid:.2f} the reference; lower bound "
            f"{bound:.2f} s; direct driver "
            f"{Spread.of(found['direct driver, all at once in one process'].walls).mid:.2f} s)",
            goal(met) if not quick else "(quick)",
        )
    ]
    return Section(TITLE, "\n".join(body), goals)


def main() -> int:
    return harness.standalone(measure, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
