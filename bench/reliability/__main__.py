"""`python -m bench.reliability [GROUP...] [--out FILE] [--outages 60,300] [--keep]`: run the
reliability matrices and write RELIABILITY.md (`make reliability`, about 20 minutes).

GROUP is any of delivery, outage, faults, bad-input, api (default: all, in that order). The
command starts its own Kafka broker and stops it at the end; every other process it starts is
ended by its PID. Progress goes to stderr; client-side logs to `<work>/logs/reliability.log`.
A case that crashes the harness becomes a MISSED row with its traceback, and the run goes on.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench.harness import REPO
from bench.reliability import (
    api_cases,
    bad_input_run,
    bad_inputs,
    corpus,
    fault_cases,
    stream_cases,
)
from bench.reliability.bad_input_run import KindResult
from bench.reliability.markdown import render
from bench.reliability.rows import Row
from bench.reliability.stack import WORKER_BASE_ENV, PeakSampler, Stack
from bench.report import load_average
from schemas.options import ConversionOptions
from tests.streams.fixtures import OwnBroker

GROUPS = ("delivery", "outage", "faults", "bad-input", "api")
DEFAULT_OUT = REPO / "RELIABILITY.md"


def _notes(stack: Stack, outages: list[float]) -> list[str]:
    needed = ", ".join(f"{task} {n}" for task, n in stack.corpus.needed.items())
    settings = ", ".join(f"`{name}={value}`" for name, value in WORKER_BASE_ENV.items())
    return [
        f"Documents (stream, fault and outage cases): {len(stack.corpus.cases)} generated "
        f"documents, {stack.corpus.pages} pages (PDFs, a PNG, a JPEG, multi-page TIFFs) with "
        "paragraphs and tables across pages, whose answers the double knows. The baseline is "
        "the direct driver's result for each with no fault; the documents need "
        f"{needed} model requests (the `needed` figures).",
        f"Workers: one per case on fresh topics (4 partitions), {settings}; "
        "`VLLM_RETRY_BUDGET_S` stays at its default, 120 s; "
        f"model outages of {', '.join(f'{s:.0f}' for s in outages)} s, real durations.",
        f"vLLM faults: `max_page_retries={fault_cases.RETRIES}` per document, a fault at 100% "
        f"of the back-pressure kinds held {fault_cases.HOLD_S:.0f} s; the hang cases set "
        f"`VLLM_REQUEST_TIMEOUT_S={fault_cases.REQUEST_TIMEOUT_S}`. Bad input: "
        f"`MAX_PAGES={bad_inputs.MAX_PAGES}` and `MAX_FILE_BYTES` 20 MiB on every driver, so "
        "that the over-the-limit files stay small. The API cases use the API's defaults.",
        "Recovery: from the fault's end (broker accepting again, model healthy again, fault "
        "cleared) to the last result; `-` when the fault lasted the whole run.",
        "Model requests: made / needed per task, with how many the double answered when not "
        "all (the rest: injected errors, dropped connections, requests whose client went away "
        "or was killed).",
    ]


def _crashed(group: str, exc: BaseException) -> Row:
    row = Row(group=group, case=f"{group} (the harness crashed)", driver="-", expected="-")
    row.miss(f"{type(exc).__name__}: {exc}")
    row.evidence = "".join(traceback.format_exception(exc))[-4000:]
    return row


def run(
    stack: Stack, groups: list[str], outages: list[float]
) -> tuple[list[Row], list[KindResult]]:
    baseline = stack.double("baseline")
    try:
        corpus.record_baseline(stack.corpus, baseline.control, ConversionOptions())
    finally:
        baseline.proc.stop()
    cases: dict[str, Callable[[], list[Row]]] = {
        "delivery": lambda: stream_cases.delivery_rows(stack),
        "outage": lambda: [row for s in outages for row in stream_cases.outage_rows(stack, s)],
        "faults": lambda: fault_cases.fault_rows(stack),
        "api": lambda: api_cases.api_rows(stack),
    }
    rows: list[Row] = []
    kinds: list[KindResult] = []
    for group in groups:
        began = time.monotonic()
        print(f"== {group}", file=sys.stderr, flush=True)
        try:
            if group == "bad-input":
                double = stack.double("bad-input")
                try:
                    found, kinds = bad_input_run.run(stack, double)
                finally:
                    double.proc.stop()
            else:
                found = cases[group]()
        except Exception as exc:
            found = [_crashed(group, exc)]
        for row in found:
            verdict = "holds" if row.holds else "MISSED: " + "; ".join(row.misses)
            print(
                f"   {row.case} [{row.driver}] {verdict} ({row.duration_s:.0f} s)", file=sys.stderr
            )
        print(f"== {group}: {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
        rows += found
    return rows, kinds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reliability", description=__doc__)
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=", ".join(GROUPS))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the Markdown to write")
    parser.add_argument(
        "--outages", default="60,300", help="model outage lengths in seconds (comma-separated)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = parser.parse_args(argv)
    groups = args.groups or list(GROUPS)
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown groups {unknown}; choose from {', '.join(GROUPS)}")
    outages = [float(s) for s in args.outages.split(",") if s.strip()]
    started, load_before = time.time(), load_average()
    work = Path(tempfile.mkdtemp(prefix="ocrflux-reliability-"))
    (work / "logs").mkdir()
    logging.basicConfig(
        filename=work / "logs" / "reliability.log",
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    print(f"work folder {work}", file=sys.stderr)
    stack = Stack(work, OwnBroker(work / "kafka"), corpus.build(), PeakSampler())
    try:
        rows, kinds = run(stack, groups, outages)
        text = render(
            rows,
            kinds,
            started=started,
            kafka_version=stack.broker.state.version,
            load_before=load_before,
            notes=_notes(stack, outages),
        )
    finally:
        stack.sampler.close()
        stack.broker.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    args.out.write_text(text)
    holding = sum(row.holds for row in rows)
    print(f"{holding} of {len(rows)} rows hold; wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
