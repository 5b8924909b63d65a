"""Latency: end to end for a 1-page document, minus the simulated model time; completion of a
100-page document against its ideal (`python -m bench.bench_latency`).

1-page documents are submitted one at a time (the next when the previous result is in) with the
client SDK; latency runs from the `submit` call to the result's arrival at a consumer already
following the results topic. The test double holds each page for exactly 0.1 s, subtracted.
Where the rest goes is read from the Kafka timestamps of each document's records (every
record's CreateTime is when its producer sent it; all processes share this machine's clock).

The 100-page document keeps the cross-page merge (one detection per neighbouring page pair, the
double answering that nothing merges), so it makes 100 page calls and 99 detections. Its ideal
is the dependency-aware ideal (bench/ideal.py): the double's C slots serving those calls with
no pipeline at all, every page call at time 0, each detection when its two pages are done (a
simulation with the same service time).
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import harness, ideal
from bench.harness import Broker, Pipeline
from bench.report import Section, Spread, goal, header, table
from schemas.options import ConversionOptions
from tests.fakes.gpu import ServiceTime

TITLE = "Stream pipeline: latency"
COMMAND = "python -m bench.bench_latency"
RUNS = 3
ONE_PAGE_DOCUMENTS = 20
ONE_PAGE_SERVICE_S = 0.1
BIG_PAGES = 100
#: (C, service time s), as in the saturation rows.
BIG_ROWS = [(8, 0.25), (32, 1.0), (128, 4.0)]
GOAL_MS = 100.0
HOPS = (
    ("submit (client produce)", "submitted", "documents"),
    ("split: fetch, open, render, send", "documents", "pages"),
    ("recognize: fetch, model call, send (model time excluded)", "pages", "page-results"),
    ("assemble: fetch, state, result sent", "page-results", "results"),
    ("result to the client's consumer", "results", "arrived"),
)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def ideal_completion(pages: int, capacity: int, service_s: float) -> float:
    """The dependency-aware ideal (bench/ideal.py) of a document of `pages` one-element pages:
    every page call, then one detection per page pair once both of its pages are done."""
    calls: list[ideal.Call] = []
    ideal.add_document(calls, [["text"]] * pages, {})
    return ideal.makespan(calls, capacity, ServiceTime(service_s))


def one_page_runs(
    pipe: Pipeline, count: int, runs_wanted: int
) -> tuple[list[list[float]], dict[str, list[float]]]:
    """Latencies (s, model time included) per run, and the time of each hop (s) per document."""
    document = harness.make_pdf(1, "latency")
    clock_offset = time.time() - time.monotonic()
    runs, sent = [], {}
    for _ in range(runs_wanted):
        latencies = []
        for doc_id in harness.unique_ids(count, "one-page"):
            began = time.monotonic()
            pipe.submit([(doc_id, document)], harness.NO_MERGE)
            arrived, _ = pipe.watcher.wait([doc_id], 60)[doc_id]
            latencies.append(arrived - began)
            sent[doc_id] = (began + clock_offset, arrived + clock_offset)
        runs.append(latencies)
    return runs, hop_times(pipe, sent)


def hop_times(pipe: Pipeline, sent: dict[str, tuple[float, float]]) -> dict[str, list[float]]:
    stamps: dict[str, dict[str, float]] = {
        doc: {"submitted": t0, "arrived": t1} for doc, (t0, t1) in sent.items()
    }
    for topic, attribute in (
        ("documents", "documents"),
        ("pages", "pages"),
        ("page-results", "page_results"),
        ("results", "results"),
    ):
        for key, stamp, _ in harness.topic_timestamps(pipe.kafka, attribute):
            doc = key.split("/")[0]
            if doc in stamps:
                stamps[doc].setdefault(topic, stamp)
    hops: dict[str, list[float]] = {label: [] for label, _, _ in HOPS}
    for times in stamps.values():
        if all(name in times for _, name, _ in HOPS):
            for label, start, end in HOPS:
                spent = times[end] - times[start]
                if start == "pages":
                    spent -= ONE_PAGE_SERVICE_S
                hops[label].append(spent)
    return hops


BigRow = tuple[int, float, list[float], list[float]]


def big_runs(
    pipe: Pipeline, document: bytes, rows: list[tuple[int, float]], runs_wanted: int
) -> tuple[list[BigRow], list[dict[str, int]]]:
    """(C, service s, completion times, split times) per row, and the model requests of each
    run; the split time runs from the first page record sent to the last (the Kafka
    timestamps of the pages topic)."""
    runs, requests = [], []
    for capacity, service in rows:
        harness.configure_double(pipe.double, capacity, service, 0.0, 1)
        for _ in range(runs_wanted):
            batch = harness.run_batch(
                pipe, [document], BIG_PAGES, ConversionOptions(), label=f"big{capacity}"
            )
            requests.append(harness.requests_by_kind(batch.double))
            runs.append((capacity, service, batch.wall_s, next(iter(batch.results))))
            print(f"100 pages, C={capacity}: {batch.wall_s:.2f} s", file=sys.stderr)
    sent: dict[str, list[float]] = {}
    for key, stamp, _ in harness.topic_timestamps(pipe.kafka, "pages"):
        sent.setdefault(key.split("/")[0], []).append(stamp)
    found = []
    for capacity, service in rows:
        mine = [run for run in runs if run[0] == capacity]
        splits = [max(sent[doc]) - min(sent[doc]) for *_, doc in mine if doc in sent]
        found.append((capacity, service, [run[2] for run in mine], splits))
    return found, requests


@dataclass
class Requests:
    """Model requests by kind: the 1-page documents' (all runs) and each 100-page run's, with
    what the direct driver needs."""

    one_page: dict[str, int]
    one_page_needed: dict[str, int]
    big: list[dict[str, int]]
    big_needed: dict[str, int]


def measure(broker: Broker, work: Path, quick: bool = False) -> Section:
    started = time.time()
    runs_wanted = 1 if quick else RUNS
    count = 5 if quick else ONE_PAGE_DOCUMENTS
    rows = BIG_ROWS[:1] if quick else BIG_ROWS
    one_page, big_document = harness.make_pdf(1, "latency"), harness.make_pdf(BIG_PAGES, "l100")
    double = harness.start_double(work, capacity=32, service_time=ONE_PAGE_SERVICE_S)
    try:
        one_needed = harness.needed_requests(double, [one_page], harness.NO_MERGE)
        big_needed = harness.needed_requests(double, [big_document], ConversionOptions())
        with harness.pipeline(broker, double, work, harness.SEPARATE, **harness.WORKER_ENV) as pipe:
            harness.run_batch(pipe, [harness.make_pdf(20, "warm")], 20, label="warm-up")
            harness.wait_idle(double)
            double.control.reset("stats")
            runs, hops = one_page_runs(pipe, count, runs_wanted)
            one_counted = harness.requests_by_kind(double.control.stats())
            big, big_counted = big_runs(pipe, big_document, rows, runs_wanted)
    finally:
        double.proc.stop()
    total = count * runs_wanted
    requests = Requests(
        one_counted, {k: v * total for k, v in one_needed.items()}, big_counted, big_needed
    )
    return report(runs, hops, big, requests, broker, started, quick)


def report(
    runs: list[list[float]],
    hops: dict[str, list[float]],
    big: list[BigRow],
    requests: Requests,
    broker: Broker,
    started: float,
    quick: bool = False,
) -> Section:
    over = [[(x - ONE_PAGE_SERVICE_S) * 1000 for x in run] for run in runs]
    p50 = Spread.of([percentile(run, 0.5) for run in over])
    p95 = Spread.of([percentile(run, 0.95) for run in over])
    one_page = table(
        ["1-page document", "ms (min / **median** / max of the runs)", "goal"],
        [
            [
                "p50 latency minus model time",
                p50.cell("{:.0f}"),
                f"<= {GOAL_MS:.0f} ms: " + goal(p50.mid <= GOAL_MS),
            ],
            ["p95 latency minus model time", p95.cell("{:.0f}"), ""],
        ],
    )
    hop_rows = [
        [
            label,
            f"{max(0.0, statistics.median(values)) * 1000:.0f}",
            f"{max(0.0, percentile(values, 0.95)) * 1000:.0f}",
        ]
        for label, values in hops.items()
        if values
    ]
    big_rows = []
    for capacity, service, times, splits in big:
        best = ideal_completion(BIG_PAGES, capacity, service)
        spread = Spread.of(times)
        pages_only = -(-BIG_PAGES // capacity) * service
        big_rows.append(
            [
                capacity,
                f"{service:g}",
                f"{pages_only:.2f}",
                f"{best:.2f}",
                spread.cell("{:.2f}"),
                Spread.of([t / best for t in times]).cell("{:.2f}"),
                Spread.of([t - best for t in times]).cell("{:.2f}"),
                Spread.of(splits).cell("{:.2f}") if splits else "",
            ]
        )
    runs_count = len(runs)
    same = all(r == requests.big_needed for r in requests.big)
    notes = [
        f"Test double: 32 slots, exactly {ONE_PAGE_SERVICE_S} s per call for the 1-page "
        f"documents ({len(runs[0])} per run, one at a time, {runs_count} runs); split, "
        "recognize and assemble as separate worker processes; after a warm-up document; "
        f"{harness.worker_settings()}.",
        "Model requests: the 1-page documents "
        f"{harness.kinds_cell(requests.one_page, requests.one_page_needed)}; each "
        f"{BIG_PAGES}-page run {harness.kinds_cell(requests.big[-1], requests.big_needed)}"
        + (" (as the direct driver needs)." if same else " (runs differ)."),
    ]
    body = [
        header(COMMAND, broker.version, started, notes, quick=quick),
        "",
        one_page,
        "",
        "Where the time of a 1-page document goes (ms, median and p95 over all of them, from "
        "the Kafka timestamps of its records; the model's 0.1 s taken out of *recognize*):",
        "",
        table(["hop", "median", "p95"], hop_rows),
        "",
        f"A {BIG_PAGES}-page document with the cross-page merge (100 page calls, 99 "
        f"detections), service time exact, {runs_count} runs per row. *pages only*: ceil(100 / "
        "C) service times; *ideal*: the dependency-aware ideal (bench/ideal.py: pages and "
        "detections on C slots with no pipeline); *split s*: from the first page record sent "
        "to the last (the split stage renders the pages in order, so the last page call "
        "starts at least that late).",
        "",
        table(
            [
                "C",
                "service s",
                "pages only s",
                "ideal s",
                "completion s",
                "x ideal",
                "over ideal s",
                "split s",
            ],
            big_rows,
        ),
    ]
    ratios = ", ".join(
        f"C={c}: x{statistics.median(t) / ideal_completion(BIG_PAGES, c, s):.2f}"
        for c, s, t, _ in big
    )
    goals = [
        (
            f"1-page latency overhead p50 <= {GOAL_MS:.0f} ms",
            f"{p50.mid:.0f} ms (p95 {p95.mid:.0f} ms)",
            goal(p50.mid <= GOAL_MS),
        ),
        (f"{BIG_PAGES}-page document against its ideal", ratios, "(no goal)"),
    ]
    return Section(TITLE, "\n".join(body), goals)


def main() -> int:
    return harness.standalone(measure, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
