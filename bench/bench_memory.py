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
WORKERS = ("split", "recognize", "assemble")
GOAL_GROWTH = 0.20


def peaks(pipe: Pipeline, document: bytes, pages: int) -> dict[str, float]:
    for proc in pipe.workers.values():
        proc.reset_peak()
    harness.run_batch(pipe, [document], pages, ConversionOptions(), label=f"mem{pages}")
    return {name: proc.peak_mb() for name, proc in pipe.workers.items()}


def measure(broker: Broker, work: Path) -> Section:
    started = time.time()
    double = harness.start_double(work, capacity=32, service_time=0.02)
    found: dict[int, list[dict[str, float]]] = {}
    baseline: dict[str, float] = {}
    try:
        with harness.pipeline(broker, double, work, harness.SEPARATE, **harness.WORKER_ENV) as pipe:
            harness.run_batch(pipe, [harness.make_pdf(20, "warm")], 20, label="warm-up")
            baseline = {name: proc.rss_mb() for name, proc in pipe.workers.items()}
            for pages in SIZES:
                document = harness.make_pdf(pages, f"mem{pages}")
                found[pages] = []
                for _ in range(RUNS):
                    found[pages].append(peaks(pipe, document, pages))
                    print(f"{pages} pages: {found[pages][-1]}", file=sys.stderr)
        with harness.pipeline(broker, double, work, harness.SINGLE, **harness.WORKER_ENV) as pipe:
            harness.run_batch(pipe, [harness.make_pdf(20, "warm")], 20, label="warm-up")
            document = harness.make_pdf(SINGLE_PAGES, "single")
            single = [peaks(pipe, document, SINGLE_PAGES)["worker"] for _ in range(RUNS)]
            print(f"single worker, {SINGLE_PAGES} pages: {single}", file=sys.stderr)
    finally:
        double.proc.stop()
    return report(found, baseline, single, broker, started)


def report(
    found: dict[int, list[dict[str, float]]],
    baseline: dict[str, float],
    single: list[float],
    broker: Broker,
    started: float,
) -> Section:
    spreads = {
        pages: {name: Spread.of([run[name] for run in runs]) for name in WORKERS}
        for pages, runs in found.items()
    }
    rows = [["resident after a warm-up document"] + [f"{baseline[n]:.0f}" for n in WORKERS]]
    rows += [
        [f"peak, {pages:,}-page document"] + [spreads[pages][n].cell("{:.0f}") for n in WORKERS]
        for pages in SIZES
    ]
    growth = {
        name: spreads[SIZES[-1]][name].mid / spreads[SIZES[-2]][name].mid - 1 for name in WORKERS
    }
    rows.append(
        [f"growth {SIZES[-2]:,} -> {SIZES[-1]:,} pages (goal <= 20%)"]
        + [f"{growth[n]:+.0%}: {goal(growth[n] <= GOAL_GROWTH)}" for n in WORKERS]
    )
    notes = [
        f"Test double: 32 slots, 0.02 s per call; one document at a time, {RUNS} runs per "
        "size; PDFs of different text pages (724 x 1024 px PNGs of about 120 KB), cross-page "
        f"merge on; {harness.worker_settings()}.",
    ]
    body = [
        header(COMMAND, broker.version, started, notes),
        "",
        "Peak resident memory (VmHWM) per worker process in MB, min / **median** / max:",
        "",
        table(["", *WORKERS], rows),
        "",
        f"One worker with all three roles (`ocrflux worker`), a {SINGLE_PAGES}-page document "
        f"(issue 5): peak resident memory {Spread.of(single).cell('{:.0f}')} MB.",
    ]
    goals = [
        (
            "peak memory within 20% from 100 to 1,000 pages",
            ", ".join(f"{n} {growth[n]:+.0%}" for n in WORKERS),
            goal(all(g <= GOAL_GROWTH for g in growth.values())),
        ),
        (
            f"single worker peak RSS, {SINGLE_PAGES}-page document (issue 5)",
            f"{Spread.of(single).mid:.0f} MB",
            "(recorded)",
        ),
    ]
    return Section(TITLE, "\n".join(body), goals)


def main() -> int:
    return harness.standalone(measure)


if __name__ == "__main__":
    raise SystemExit(main())
