"""Saturation: pages per second of the whole pipeline for a backlog of 2,000 pages, against the
ideal of the simulated GPU (`python -m bench.bench_saturation`).

The OCRFlux-3B test double serves at most C requests at once, each holding its slot for a
service time drawn uniformly from mean * (1 +- 20%) with a fixed seed, so the ideal is
C / mean pages a second. Twenty 100-page PDFs (2,000 different pages) are submitted at once to
split, recognize and assemble workers (one process each) on a local broker; the time runs from
the first submit to the last result. Every document skips the cross-page merge, so each page is
exactly one model call and pages/s is comparable with the ideal.

Service times: a GPU that decodes more pages at once takes longer per page (vLLM batches them),
so the rows hold the ideal at 32 pages/s and vary C (mean 0.25 s at C=8, 1 s at C=32, 4 s at
C=128): what they ask is whether the pipeline keeps C requests in flight. 32 pages/s needs
about 1 core of this 2-core machine at the measured overhead (see the overhead section), so the
CPU does not decide these rows unless other processes take it. A fixed 0.25 s would make the
ideal 128 and 512 pages/s at C=32 and 128: more than 2 cores can render and ship (the overhead
section's throughput with an instant model is that ceiling), so those rows would only measure
the CPU.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from bench import harness
from bench.harness import Batch, Broker
from bench.report import Section, Spread, goal, header, table

TITLE = "Stream pipeline: saturation"
COMMAND = "python -m bench.bench_saturation"
DOCUMENTS, PAGES_PER_DOCUMENT = 20, 100
RUNS = 3
JITTER = 0.2
SEED = 8
IDEAL = 32.0
#: (C, mean service time s): the same ideal for every C.
ROWS = [(8, 8 / IDEAL), (32, 32 / IDEAL), (128, 128 / IDEAL)]
#: A row counts as CPU-bound when the machine's cores were at least this busy.
CPU_BOUND = 0.9
WORKERS = ("split", "recognize", "assemble")


def measure(broker: Broker, work: Path) -> Section:
    started = time.time()
    documents = [harness.make_pdf(PAGES_PER_DOCUMENT, f"sat{n}") for n in range(DOCUMENTS)]
    pages = DOCUMENTS * PAGES_PER_DOCUMENT
    double = harness.start_double(work, capacity=8, service_time=0.25, jitter=JITTER, seed=SEED)
    rows: list[tuple[int, float, list[Batch]]] = []
    try:
        with harness.pipeline(broker, double, work, harness.SEPARATE, **harness.WORKER_ENV) as pipe:
            harness.run_batch(pipe, documents[:1], PAGES_PER_DOCUMENT, label="warm-up")
            for capacity, mean in ROWS:
                harness.configure_double(double, capacity, mean, JITTER, SEED)
                batches = []
                for run in range(RUNS):
                    batch = harness.run_batch(pipe, documents, pages, label=f"c{capacity}")
                    print(
                        f"C={capacity} S={mean}: run {run + 1}: {batch.pages_per_s:.1f} pages/s, "
                        f"all busy {batch.double['all_busy_share']:.2f}, "
                        f"machine {batch.machine_busy:.0%} busy",
                        file=sys.stderr,
                    )
                    batches.append(batch)
                rows.append((capacity, mean, batches))
    finally:
        double.proc.stop()
    return report(rows, broker, started)


def report(rows: list[tuple[int, float, list[Batch]]], broker: Broker, started: float) -> Section:
    lines = []
    reasons = []
    goals = []
    for capacity, mean, batches in rows:
        ideal = capacity / mean
        pages = batches[0].pages
        best = pages / harness.best_makespan(pages, capacity, mean, JITTER, SEED) / ideal
        rate = Spread.of([b.pages_per_s for b in batches])
        share = rate.mid / ideal
        steady = Spread.of([b.steady_pages_per_s / ideal for b in batches])
        fill = Spread.of([b.fill_s(capacity) for b in batches])
        busy = Spread.of([b.machine_busy for b in batches])
        ours = Spread.of([b.cores([*WORKERS, "kafka broker"]) for b in batches])
        if share >= 0.95:
            verdict = goal(True)
        elif busy.mid >= CPU_BOUND:
            verdict = "CPU-bound"
            reasons.append(
                f"C={capacity}, {mean:g} s: {share:.0%} of the ideal with the machine's cores "
                f"{busy.mid:.0%} busy, {ours.mid:.2f} of its 2 cores used by the workers and "
                f"the broker, {max(0.0, busy.mid * 2 - ours.mid):.2f} by the test double and "
                "other processes"
            )
        else:
            verdict = goal(False)
            reasons.append(
                f"C={capacity}, {mean:g} s: {share:.1%} of the ideal end to end "
                f"({share / best:.1%} of what a perfect client reaches), {steady.mid:.0%} in the "
                "steady state: the loss is at the ends of the batch. "
                f"The double had {capacity} calls in flight only {fill.mid:.1f} s after the "
                f"first arrived (the split stage renders the first {capacity} pages in order, "
                "one rasterised at a time), and the last partial wave drains with slots idle; "
                "a perfect client, every call waiting at time 0, reaches "
                f"{best:.1%} of the ideal on this batch"
            )
        goals.append(
            (
                f"saturation >= 95% of ideal (C={capacity}, {mean:g} s, ideal {ideal:.0f}/s)",
                f"{share:.1%} ({rate.mid:.1f} pages/s; steady {steady.mid:.0%}; "
                f"perfect client {best:.1%})",
                verdict,
            )
        )
        lines.append(
            [
                capacity,
                f"{mean:g}",
                f"{ideal:.0f}",
                f"{best:.1%}",
                rate.cell(),
                Spread.of([b.pages_per_s / ideal for b in batches]).cell("{:.1f}%", 100),
                steady.cell("{:.0f}%", 100),
                fill.cell("{:.1f}"),
                Spread.of([b.double["all_busy_share"] for b in batches]).cell("{:.0f}%", 100),
                Spread.of([b.double["utilisation"] for b in batches]).cell("{:.0f}%", 100),
                ours.cell("{:.2f}"),
                busy.cell("{:.0f}%", 100),
                verdict,
            ]
        )
    notes = [
        f"{DOCUMENTS} PDFs of {PAGES_PER_DOCUMENT} pages (2,000 different text pages, 724 x 1024 "
        "px PNGs of about 120 KB) submitted at once, merge skipped (one model call per page); "
        "workers: split, recognize and assemble as separate processes, 4 partitions; "
        f"{harness.worker_settings()}; {RUNS} runs per row after a warm-up document.",
        "The test double identifies pages by the SHA-256 of their PNG bytes (`--page-key "
        "bytes`) instead of decoding them (about 8 CPU-ms a page it would otherwise take from "
        "the pipeline on the same cores).",
        "Service time: uniform in mean x (1 +- 20%), seed 8. The rows hold the ideal at 32 "
        "pages/s (a GPU that batches more pages takes longer for each) and ask whether the "
        "pipeline keeps C requests in flight. 32 pages/s is about 1 core of this machine at the "
        "measured overhead; a fixed 0.25 s (ideal 128 and 512 pages/s at C=32 and 128) would "
        "only measure the CPU, whose ceiling is the overhead section's throughput with an "
        "instant model.",
    ]
    body = [
        header(COMMAND, broker.version, started, notes),
        "",
        "Cells are min / **median** / max over the runs. *perfect client*: the share of the "
        "ideal a client reaches whose 2,000 calls all wait at time 0 (simulated with the same "
        "service times: the last partial wave leaves slots idle); *pages/s*: 2,000 pages over "
        "the time from the first submit to the last result; *steady*: model calls finished a "
        "second between the 10th and 90th percentile of their finish times (without the start, "
        "when the first C pages are still being rendered, and the last partial wave); *C in flight "
        "after*: seconds from the first call's arrival until C were in flight; *all C busy*: "
        "share of the double's active time with every slot busy; *slots busy*: mean share of "
        "slots busy; *pipeline cores*: CPU of the three workers and the broker over the wall "
        "time; *machine busy*: all processes on the machine, of its 2 cores.",
        "",
        table(
            [
                "C",
                "service s",
                "ideal pages/s",
                "perfect client",
                "pages/s",
                "of ideal",
                "steady, of ideal",
                "C in flight after s",
                "all C busy",
                "slots busy",
                "pipeline cores",
                "machine busy",
                "goal >= 95%",
            ],
            lines,
        ),
    ]
    if reasons:
        body += ["", "Where the goal is missed:", ""]
        body += [f"- {reason}." for reason in reasons]
    return Section(TITLE, "\n".join(body), goals)


def main() -> int:
    return harness.standalone(measure)


if __name__ == "__main__":
    raise SystemExit(main())
