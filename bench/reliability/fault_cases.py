"""Each vLLM fault class at 10% and at 100% of the model requests, through the stream processor
(one worker, the corpus, `max_page_retries=3`).

Two families, by what the client sees:

- back-pressure and transport faults (503, 429 with Retry-After, a hang past the request
  timeout, a dropped connection, a body cut mid-way): no answer came, so no attempt is spent.
  They are waited out: at 10% every document completes as if nothing happened; at 100% the
  fault is held for `HOLD_S` and then cleared, and every document still completes with no
  fallback page (the recovery time runs from the clearing to the last result).
- answer faults (HTTP 500, invalid JSON, JSON that is not a page, finish_reason=length, a 5 MB
  answer): the model answered badly, so each is a spent attempt. At 10%, three attempts make
  (almost) every page good; at 100% every page becomes a fallback and the documents are
  `partial`: correct degradation, not an outage.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench.reliability.rows import Row
from bench.reliability.stack import Stack, Stream, fill_row, stream_evidence
from schemas.options import ConversionOptions
from tests.scenarios import DocumentCase

RETRIES = 3
OPTIONS = ConversionOptions(max_page_retries=RETRIES)
RATES = (0.1, 1.0)
#: How long a 100% back-pressure fault is held before it is cleared (well inside the client's
#: 120 s retry budget: the documents wait in the client's retries).
HOLD_S = 15.0
REQUEST_TIMEOUT_S = 3
RESULTS_TIMEOUT_S = 240.0
SEED = 5


@dataclass(frozen=True)
class FaultClass:
    label: str
    kind: str
    waited_out: bool  # back-pressure or transport (True), or a bad answer (False)
    retry_after: float | None = None
    env: tuple[tuple[str, str], ...] = ()


CLASSES = (
    FaultClass("HTTP 500", "http_500", waited_out=False),
    FaultClass("HTTP 503", "http_503", waited_out=True),
    FaultClass("HTTP 429, Retry-After: 1", "http_429", waited_out=True, retry_after=1.0),
    FaultClass(
        f"hang past the request timeout (VLLM_REQUEST_TIMEOUT_S={REQUEST_TIMEOUT_S})",
        "stall",
        waited_out=True,
        env=(("VLLM_REQUEST_TIMEOUT_S", str(REQUEST_TIMEOUT_S)),),
    ),
    FaultClass("connection dropped, no answer", "drop", waited_out=True),
    FaultClass("connection dropped mid-body", "drop_mid_body", waited_out=True),
    FaultClass("invalid JSON", "invalid_json", waited_out=False),
    FaultClass("JSON that is not a page", "non_page_json", waited_out=False),
    FaultClass("finish_reason=length", "length", waited_out=False),
    FaultClass("5 MB answer (finish_reason=stop)", "huge_answer", waited_out=False),
)


def expectation(fault: FaultClass, rate: float) -> str:
    if fault.waited_out and rate < 1:
        return "waited out: all 8 completed equal to the baseline, 0 fallback pages"
    if fault.waited_out:
        return (
            f"waited out: held {HOLD_S:.0f} s then cleared; all 8 completed equal to the "
            "baseline, 0 fallback pages"
        )
    if rate < 1:
        return (
            f"spent attempts: with {RETRIES} attempts (almost) all completed, each equal to the "
            "baseline (a bad answer is never kept); <= 1 fallback page"
        )
    return (
        "every page a fallback (correct degradation): the 4 PDFs partial (text layer), the 4 "
        "images failed (no page has any text, ocrflux/document.py); none lost"
    )


def fault_row(stack: Stack, fault: FaultClass, rate: float) -> Row:
    began = time.monotonic()
    name = f"fault-{fault.kind}-{int(rate * 100)}"
    row = Row(
        group="vLLM faults",
        case=f"{fault.label} at {rate:.0%}",
        driver="stream (1 worker)",
        expected=expectation(fault, rate),
    )
    double = stack.double(name)
    stream = Stream(stack, double, name, env=dict(fault.env))
    try:
        stream.start_worker()
        double.control.reset("stats")
        double.control.add_fault(fault.kind, rate=rate, seed=SEED, retry_after=fault.retry_after)
        ids = stream.submit(OPTIONS)
        ended = None
        if fault.waited_out and rate >= 1:
            time.sleep(HOLD_S)  # the fault's length, the point of the case
            injected = sum(double.control.stats()["faults_injected"].values())
            double.control.clear_faults()
            ended = time.time()
            row.observed = f"{injected} faults injected in {HOLD_S:.0f} s, then cleared"
        if not stream.wait_results(list(ids.values()), RESULTS_TIMEOUT_S):
            row.miss(f"not every result within {RESULTS_TIMEOUT_S:.0f} s")
        injected_total = sum(double.control.stats()["faults_injected"].values())
        tally = fill_row(row, stream, ids, fault_ended_at=ended, outage_only=fault.waited_out)
        _judge(row, fault, rate, stack.corpus.cases)
        largest = max((len(r.document_text) for r in tally.results.values()), default=0)
        if largest > 2**20:  # what a document's text is made of, when it is no page's real text
            row.observed = f"largest document text {largest / 2**20:.0f} MiB"
    finally:
        logs = stream.worker_logs()
        stream.close()
        double.proc.stop()
    row.peak_rss_mib = stack.sampler.take([f"{name}/worker"])
    row.duration_s = time.monotonic() - began
    codes = ", ".join(f"{code} x{n}" for code, n in sorted(row.codes.items()))
    summary = (
        f"{row.completed} completed, {row.partial} partial, {row.failed} failed"
        + (f" ({codes})" if codes else "")
        + f"; {row.equal_to_baseline}/{row.submitted} equal to the baseline; "
        f"{injected_total} faults injected"
    )
    row.observed = summary + (f" ({row.observed})" if row.observed else "")
    if not row.holds:
        row.evidence = stream_evidence(row, logs)
    return row


def _judge(row: Row, fault: FaultClass, rate: float, cases: Sequence[DocumentCase]) -> None:
    if fault.waited_out:
        if row.completed != row.submitted or row.fallback_pages:
            row.miss("a back-pressure fault degraded a document")
        return
    if rate < 1:
        if row.failed or row.fallback_pages > 1:
            row.miss(f"{row.fallback_pages} fallback pages, {row.failed} failed")
        if row.equal_to_baseline != row.completed:
            row.miss(
                f"{row.completed - row.equal_to_baseline} completed document(s) differ from the "
                "baseline: a bad answer was kept"
            )
        return
    pdfs = sum(1 for case in cases if case.name.endswith(".pdf"))
    if (row.completed, row.partial, row.failed) != (0, pdfs, len(cases) - pdfs):
        row.miss(
            f"expected {pdfs} partial and {len(cases) - pdfs} failed; got {row.completed} "
            f"completed, {row.partial} partial, {row.failed} failed"
        )
    elif row.fallback_pages != row.needed.get("page", 0):
        row.miss(f"{row.fallback_pages} fallback pages of {row.needed.get('page', 0)}")


def fault_rows(stack: Stack) -> list[Row]:
    return [fault_row(stack, fault, rate) for fault in CLASSES for rate in RATES]
