"""Memory: peak resident memory of each worker role for 1-, 100- and 1,000-page documents, and
of a single all-roles worker for a 300-page document (`python -m bench.bench_memory`).

Split, recognize and assemble run as separate worker processes. Before each document the peak
of every worker is reset (Linux: `5` written to /proc/PID/clear_refs resets VmHWM) and read
after its result arrived, so each figure is the worker's peak while that document went through,
its resident baseline (interpreter, libraries, connections) included. Documents keep the
cross-page merge (a detection per page pair), so the assembler's state is fully exercised.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench import harness
from bench.harness import Broker, Pipeline
from bench.report import Section, Spread, goal, header, table
from schemas.options import ConversionOptions

TITLE = "Stream pipeline: memory"
COMMAND = "python -m bench.bench_memory"
RUNS = 3
SIZES = (1, 100, 1000)
SINGLE_PAGES = 300
QUICK_SIZES, QUICK_SINGLE = (1, 20, 50), 50
WORKERS = ("split", "recognize", "assemble")
GOAL_GROWTH = 0.20


def peaks(
    pipe: Pipeline, document: bytes, pages: int, requests: list[dict[str, int]]
) -> dict[str, float]:
    """Each worker's peak while the document went through; its model requests appended."""
    for proc in pipe.workers.values():
        proc.reset_peak()
    batch = harness.run_batch(pipe, [document], pages, ConversionOptions(), label=f"mem{pages}")
    requests.append(harness.requests_by_kind(batch.double))
    return {name: proc.peak_mb() for name, proc in pipe.workers.items()}


def measure(broker: Broker, work: Path, quick: bool = False) -> Section:
    started = time.time()
    sizes, single_pages = (QUICK_SIZES, QUICK_SINGLE) if quick else (SIZES, SINGLE_PAGES)
    runs = 1 if quick else RUNS
    documents = {pages: harness.make_pdf(pages, f"mem{pages}") for pages in sizes}
    documents[0] = harness.make_pdf(single_pages, "single")  # 0: the single worker's
    double = harness.start_double(work, capacity=32, service_time=0.02)
    found: dict[int, list[dict[str, float]]] = {}
    baseline: dict[str, float] = {}
    requests: dict[int, list[dict[str, int]]] = {pages: [] for pages in documents}
    try:
        needed = {
            pages: harness.needed_requests(double, [document], ConversionOptions())
            for pages, document in documents.items()
        }
        with harness.pipeline(broker, double, work, harness.SEPARATE, **harness.WORKER_ENV) as pipe:
            harness.run_batch(pipe, [harness.make_pdf(20, "warm")], 20, label="warm-up")
            baseline = {name: proc.rss_mb() for name, proc in pipe.workers.items()}
            for pages in sizes:
                found[pages] = []
                for _ in range(runs):
                    found[pages].append(peaks(pipe, documents[pages], pages, requests[pages]))
                    print(f"{pages} pages: {found[pages][-1]}", file=sys.stderr)
        with harness.pipeline(broker, double, work, harness.SINGLE, **harness.WORKER_ENV) as pipe:
            harness.run_batch(pipe, [harness.make_pdf(20, "warm")], 20, label="warm-up")
            single = [
                peaks(pipe, documents[0], single_pages, requests[0])["worker"] for _ in range(runs)
            ]
            print(f"single worker, {single_pages} pages: {single}", file=sys.stderr)
    finally:
        double.proc.stop()
    counted = {pages: harness.kinds_cell(r[-1], needed[pages]) for pages, r in requests.items()}
    differ = [pages for pages, r in requests.items() if any(x != needed[pages] for x in r)]
    requests_found = (counted, differ)
    return report(found, baseline, single, single_pages, requests_found, broker, started, quick)


def report(
    found: dict[int, list[dict[str, float]]],
    baseline: dict[str, float],
    single: list[float],
    single_pages: int,
    requests: tuple[dict[int, str], list[int]],
    broker: Broker,
    started: float,
    quick: bool = False,
) -> Section:
    sizes = sorted(found)
    counted, differ = requests
    spreads = {
        pages: {name: Spread.of([run[name] for run in runs]) for name in WORKERS}
        for pages, runs in found.items()
    }
    rows = [["resident after a warm-up document"] + [f"{baseline[n]:.0f}" for n in WORKERS]]
    rows += [
        [f"peak, {pages:,}-page document"] + [spreads[pages][n].cell("{:.0f}") for n in WORKERS]
        for pages in sizes
    ]
    growth = {
        name: spreads[sizes[-1]][name].mid / spreads[sizes[-2]][name].mid - 1 for name in WORKERS
    }
    rows.append(
        [f"growth {sizes[-2]:,} -> {sizes[-1]:,} pages (goal <= 20%)"]
        + [f"{growth[n]:+.0%}: {goal(growth[n] <= GOAL_GROWTH)}" for n in WORKERS]
    )
    notes = [
        f"Test double: 32 slots, 0.02 s per call; one document at a time, {len(single)} runs "
        "per size; PDFs of different text pages (724 x 1024 px grey PNGs of about 37 KB), "
        f"cross-page merge on; {harness.worker_settings()}.",
        "Model requests per run: "
        + "; ".join(
            f"{pages or single_pages:,} pages{' (single worker)' if not pages else ''}: {cell}"
            for pages, cell in counted.items()
        )
        + (
            f" (runs of {differ} differ from the direct driver's count)."
            if differ
            else ", as the direct driver needs."
        ),
    ]
    body = [
        header(COMMAND, broker.version, started, notes, quick=quick),
        "",
        "Peak resident memory (VmHWM) per worker process in MB, min / **median** / max:",
        "",
        table(["", *WORKERS], rows),
        "",
        f"One worker with all three roles (`ocrflux worker`), a {single_pages}-page document "
        f"(issue 5): peak resident memory {Spread.of(single).cell('{:.0f}')} MB.",
    ]
    goals = [
        (
            f"peak memory within 20% from {sizes[-2]:,} to {sizes[-1]:,} pages",
            ", ".join(f"{n} {growth[n]:+.0%}" for n in WORKERS),
            goal(all(g <= GOAL_GROWTH for g in growth.values())),
        ),
        (
            f"single worker peak RSS, {single_pages}-page document (issue 5)",
            f"{Spread.of(single).mid:.0f} MB",
            "(recorded)",
        ),
    ]
    return Section(TITLE, "\n".join(body), goals)


def main() -> int:
    return harness.standalone(measure, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
