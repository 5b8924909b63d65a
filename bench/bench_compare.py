"""Side by side on the same test double in the same run: the stream pipeline, the direct driver
(`ocrflux.convert.convert_document`) and a naive client that sends one page at a time
(`python -m bench.bench_compare`).

The naive client is what a simple script does: render a page, POST it to the model server,
wait for the answer, next page (urllib, no concurrency). All three convert the same PDF with
the cross-page merge skipped, so each makes exactly one model call per page; the rounds
alternate between the three so that they share the machine's conditions.
"""

from __future__ import annotations

import asyncio
import base64
import json
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from bench import harness
from bench.harness import Broker, Double, Pipeline
from bench.report import Section, Spread, header, table
from ocrflux import prompts
from ocrflux.page_parse import parse_page_answer
from ocrflux.render import open_document

TITLE = "Stream pipeline: side by side"
COMMAND = "python -m bench.bench_compare"
RUNS = 3
PAGES = 40
CAPACITY, SERVICE_S, JITTER, SEED = 8, 0.25, 0.2, 5
MODEL = harness.MODEL


def naive(url: str, document: bytes) -> str:
    """One page at a time: render, send, wait, next."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback only
    texts = []
    with open_document(document) as opened:
        for page in opened.pages():
            body = {
                "model": MODEL,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": prompts.page_prompt()},
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png;base64," + b64(page.png)},
                            },
                        ],
                    }
                ],
                "temperature": 0.0,
                "max_tokens": 8192,
            }
            request = urllib.request.Request(
                f"{url}/v1/chat/completions",
                data=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
            )
            with opener.open(request, timeout=60) as response:
                answer = json.loads(response.read())
            content = answer["choices"][0]["message"]["content"]
            texts.append(parse_page_answer(content).natural_text or "")
    return "\n\n".join(texts)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def direct(url: str, document: bytes) -> None:
    [result] = await harness.direct_convert(url, [document], harness.NO_MERGE)
    if result.status != "completed":
        raise RuntimeError(f"direct driver: {result.status} {result.error}")


#: (wall s, client CPU s, the double's mean slots busy, model requests by kind)
Timed = tuple[float, float, float, dict[str, int]]


def timed(double: Double, run: Callable[[], float | None]) -> Timed:
    """One conversion, measured. The client CPU is this process's, unless `run` returns the
    CPU seconds it measured elsewhere."""
    harness.wait_idle(double)
    double.control.reset("stats")
    wall, cpu = time.monotonic(), time.process_time()
    elsewhere = run()
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    stats = double.control.stats()
    return (
        wall,
        cpu if elsewhere is None else elsewhere,
        stats["utilisation"],
        harness.requests_by_kind(stats),
    )


def measure(broker: Broker, work: Path, quick: bool = False) -> Section:
    started = time.time()
    document = harness.make_pdf(PAGES, "compare")
    double = harness.start_double(
        work, capacity=CAPACITY, service_time=SERVICE_S, jitter=JITTER, seed=SEED
    )
    found: dict[str, list[Timed]] = {
        "stream pipeline": [],
        "direct driver": [],
        "naive client": [],
    }
    try:
        needed = harness.needed_requests(double, [document], harness.NO_MERGE)
        with harness.pipeline(broker, double, work, harness.SEPARATE, **harness.WORKER_ENV) as pipe:
            harness.run_batch(pipe, [harness.make_pdf(10, "warm")], 10, label="warm-up")
            for run in range(1 if quick else RUNS):
                for name, convert in _clients(pipe, double, document).items():
                    found[name].append(timed(double, convert))
                    wall = found[name][-1][0]
                    print(f"round {run + 1}, {name}: {wall:.2f} s", file=sys.stderr)
    finally:
        double.proc.stop()
    return report(found, needed, broker, started, quick)


def _clients(
    pipe: Pipeline, double: Double, document: bytes
) -> dict[str, Callable[[], float | None]]:
    def pipeline() -> float:
        batch = harness.run_batch(pipe, [document], PAGES, label="compare")
        return sum(batch.cpu_s.get(name, 0.0) for name in (*harness.SEPARATE, "kafka broker"))

    def direct_driver() -> None:
        asyncio.run(direct(double.url, document))

    def naive_client() -> None:
        naive(double.url, document)

    return {
        "stream pipeline": pipeline,
        "direct driver": direct_driver,
        "naive client": naive_client,
    }


def report(
    found: dict[str, list[Timed]],
    needed: dict[str, int],
    broker: Broker,
    started: float,
    quick: bool = False,
) -> Section:
    ideal_rate = CAPACITY / SERVICE_S
    rows = []
    for name, runs in found.items():
        walls = [wall for wall, *_ in runs]
        same = all(r[3] == needed for r in runs)
        rows.append(
            [
                name,
                Spread.of(walls).cell("{:.2f}"),
                Spread.of([PAGES / w for w in walls]).cell("{:.1f}"),
                Spread.of([PAGES / w / ideal_rate for w in walls]).cell("{:.0f}%", 100),
                Spread.of([u for _, _, u, _ in runs]).cell("{:.0f}%", 100),
                Spread.of([c * 1000 / PAGES for _, c, _, _ in runs]).cell("{:.1f}"),
                harness.kinds_cell(runs[-1][3], needed) + ("" if same else " (runs differ)"),
            ]
        )
    best = harness.best_makespan(PAGES, CAPACITY, SERVICE_S, JITTER, SEED)
    rows.append(
        [
            "*a perfect client (simulated: every call waiting at time 0)*",
            f"{best:.2f}",
            f"{PAGES / best:.1f}",
            f"{PAGES / best / ideal_rate:.0%}",
            "",
            "",
            harness.kinds_cell(needed),
        ]
    )
    notes = [
        f"One test double for all three: {CAPACITY} slots, service time uniform in "
        f"{SERVICE_S} s x (1 +- {JITTER:.0%}), seed {SEED}: ideal {ideal_rate:.0f} pages/s, "
        f"{PAGES} pages in {PAGES / ideal_rate:.2f} s. A {PAGES}-page PDF, cross-page merge "
        f"skipped; {len(found['naive client'])} rounds, the three clients in turn within each.",
        "Stream pipeline: split, recognize and assemble workers already running (started "
        "before the rounds), timed from `submit` to the result; direct driver: "
        "`convert_document` in this process (64 pages in flight, its default); naive client: "
        "one page at a time. Client CPU: the three workers and the broker for the pipeline, "
        "this process for the other two (both render in-process). Workers: "
        f"{harness.worker_settings()}.",
    ]
    body = [
        header(COMMAND, broker.version, started, notes, quick=quick),
        "",
        table(
            [
                "client",
                "document s",
                "pages/s",
                "of ideal",
                "GPU slots busy",
                "client CPU ms/page",
                "requests (needed: the direct driver's)",
            ],
            rows,
        ),
    ]
    rates = ", ".join(
        f"{name} {statistics.median(PAGES / w for w, *_ in runs):.1f}"
        for name, runs in found.items()
    )
    goals = [(f"side by side, pages/s (ideal {ideal_rate:.0f})", rates, "(no goal)")]
    return Section(TITLE, "\n".join(body), goals)


def main() -> int:
    return harness.standalone(measure, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
