"""Delivery and outage cases of the stream processor, and the same outages through the direct
driver (`ocrflux convert`).

Each stream case sends the corpus (8 documents, 18 pages) to one worker on fresh topics, does
its damage while pages are being recognized, undoes it, and waits for every result. The counts
come from the results topic (every copy of every result) and the double's stats.

Durations below are the faults' real lengths (the point of the case), not synchronisation:
everything else waits on a condition with a deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench.harness import Double
from bench.reliability.children import Finished, run_measured
from bench.reliability.rows import Row
from bench.reliability.stack import Stack, Stream, fill_row, log_excerpt, stream_evidence
from schemas.options import ConversionOptions
from schemas.results import DocumentResult

RESULTS_TIMEOUT_S = 240.0
WORKER_KILLS = 5
#: Requests the double finishes between one worker start and its SIGKILL: the kill lands while
#: pages are being recognized, never on an idle worker.
PROGRESS_BEFORE_KILL = 2
BROKER_DOWN_S = 10.0
LONG_BROKER_DOWN_S = 20.0
SHORT_DELIVERY_TIMEOUT_S = 5
#: A slow GPU for the delivery cases (one slot, 0.4 s a request): the documents take long
#: enough that every kill and stop lands mid-run.
SLOW_GPU = {"capacity": 1, "service_time": 0.4}
#: The outage cases' GPUs: the stream's documents take about 15 s and the direct driver's
#: about 30 s, so the outage starts while both are half done.
OUTAGE_GPU = {"capacity": 1, "service_time": 0.5}
DIRECT_OUTAGE_GPU = {"capacity": 1, "service_time": 2.0}
#: Documents the direct driver converts during an outage (one `ocrflux convert` each).
DIRECT_DOCUMENTS = ("gen-61-01.pdf", "gen-61-06.tiff")
STREAM_EXPECTED = (
    "all 8 completed, each equal to the direct driver's no-fault result; 0 fallback pages; "
    "duplicates (replays) byte-identical"
)

Damage = Callable[[Stream, Row], float | None]


def stream_case(
    stack: Stack,
    name: str,
    case: str,
    damage: Damage,
    *,
    expected: str = STREAM_EXPECTED,
    env: dict[str, str] | None = None,
    gpu: dict[str, float] | None = None,
    group: str = "Delivery",
) -> Row:
    """The corpus through one worker while `damage` runs; `damage` returns when the fault
    ended (epoch seconds), or None when it lasts the whole run."""
    began = time.monotonic()
    row = Row(group=group, case=case, driver="stream (1 worker)", expected=expected)
    double = stack.double(name)
    stream = Stream(stack, double, name, env=dict(env or {}))
    try:
        if gpu:
            double.control.configure(**gpu)  # type: ignore[arg-type]
        stream.start_worker()
        ids = stream.submit(ConversionOptions())
        ended = damage(stream, row)
        if not stream.wait_results(list(ids.values()), RESULTS_TIMEOUT_S):
            row.miss(f"not every result within {RESULTS_TIMEOUT_S:.0f} s")
        fill_row(row, stream, ids, fault_ended_at=ended, outage_only=True)
        if row.completed != row.submitted or row.fallback_pages:
            row.miss("not every document completed without fallback pages")
    finally:
        logs = stream.worker_logs()
        stream.close()
        double.proc.stop()
    row.peak_rss_mib = stack.sampler.take([f"{name}/worker"])
    row.duration_s = time.monotonic() - began
    row.observed = _observed(row) + (f"; {row.observed}" if row.observed else "")
    if not row.holds:
        row.evidence = stream_evidence(row, logs)
    return row


def _observed(row: Row) -> str:
    return (
        f"{row.completed} completed, {row.partial} partial, {row.failed} failed; "
        f"{row.equal_to_baseline}/{row.submitted} equal to the baseline"
    )


def wait_completed(double: Double, more: int, timeout_s: float = 120.0) -> None:
    """Until the double has finished `more` requests beyond what it has finished now."""
    done = int(double.control.stats()["completed"])
    double.control.wait_for(timeout=timeout_s, completed=done + more)


# --- delivery --------------------------------------------------------------------------------


def kill_worker_repeatedly(stream: Stream, row: Row) -> float:
    for _ in range(WORKER_KILLS):
        wait_completed(stream.double, PROGRESS_BEFORE_KILL)
        stream.kill_worker()
        stream.start_worker()
    row.observed = f"{WORKER_KILLS} SIGKILLs, each after {PROGRESS_BEFORE_KILL} more model answers"
    return time.time()


def broker_outage(kill: bool, down_s: float, evidence: str | None = None) -> Damage:
    def damage(stream: Stream, row: Row) -> float:
        broker = stream.stack.broker
        wait_completed(stream.double, 3)
        stopped = time.monotonic()
        if kill:
            broker.kill()
        else:
            broker.stop()
        time.sleep(max(0.0, down_s - (time.monotonic() - stopped)))  # the outage itself
        if evidence is not None and evidence not in stream.worker_logs():
            row.miss(f"the worker never logged {evidence!r}: the case did not happen")
        broker.start()
        row.observed = f"broker down {time.monotonic() - stopped:.0f} s"
        if evidence is not None and evidence in stream.worker_logs():
            row.observed += f", worker logged {evidence!r}"
        return time.time()

    return damage


def delivery_rows(stack: Stack) -> list[Row]:
    return [
        stream_case(
            stack,
            "worker-kill",
            f"worker SIGKILL x{WORKER_KILLS}, restarted each time",
            kill_worker_repeatedly,
            gpu=SLOW_GPU,
        ),
        stream_case(
            stack,
            "broker-kill",
            f"broker SIGKILL, restarted after {BROKER_DOWN_S:.0f} s",
            broker_outage(True, BROKER_DOWN_S),
            gpu=SLOW_GPU,
        ),
        stream_case(
            stack,
            "broker-term",
            f"broker SIGTERM, restarted after {BROKER_DOWN_S:.0f} s",
            broker_outage(False, BROKER_DOWN_S),
            gpu=SLOW_GPU,
        ),
        stream_case(
            stack,
            "broker-long",
            f"broker down {LONG_BROKER_DOWN_S:.0f} s, longer than the delivery timeout "
            f"(KAFKA_DELIVERY_TIMEOUT_S={SHORT_DELIVERY_TIMEOUT_S})",
            broker_outage(False, LONG_BROKER_DOWN_S, evidence="not acknowledged by Kafka"),
            env={"KAFKA_DELIVERY_TIMEOUT_S": str(SHORT_DELIVERY_TIMEOUT_S)},
            gpu=SLOW_GPU,
        ),
    ]


# --- model outages: the stream and the direct driver together ------------------------------------


class DirectRun:
    """`ocrflux convert` on a few corpus documents, in threads, against their own double."""

    def __init__(self, stack: Stack, double: Double, name: str) -> None:
        self.stack = stack
        self.double = double
        self.log_dir = stack.work / "logs" / name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.finished: dict[str, Finished] = {}
        self.ended_at: dict[str, float] = {}
        self._threads = [
            threading.Thread(target=self._convert, args=(doc,), daemon=True)
            for doc in DIRECT_DOCUMENTS
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _convert(self, doc: str) -> None:
        path = self.stack.work / "direct-inputs" / doc
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.stack.corpus.case(doc).data)
        out = self.out(doc)
        args = ["-m", "ocrflux.cli", "convert", str(path), "--json", "-o", str(out)]
        env = {"VLLM_URL": self.double.url, "OCRFLUX_ENGINE": "vllm"}
        self.finished[doc] = run_measured(args, env, self.log_dir, doc, 900.0)
        self.ended_at[doc] = time.time()

    def out(self, doc: str) -> Path:
        return self.log_dir / f"{doc}.json"

    def result(self, doc: str) -> DocumentResult | None:
        path = self.out(doc)
        if not path.exists() or not path.read_text().strip():
            return None
        return DocumentResult.model_validate_json(path.read_text())


def outage_rows(stack: Stack, outage_s: float, budget_s: float = 120.0) -> list[Row]:
    """A model outage of `outage_s` seconds (the doubles' health "down": /health and every model
    request refused) under the stream and, at the same time, under `ocrflux convert`."""
    began = time.monotonic()
    label = f"model outage {outage_s:.0f} s (VLLM_RETRY_BUDGET_S={budget_s:.0f}, the default)"
    direct_double = stack.double(f"outage-{outage_s:.0f}-direct")
    direct_double.control.configure(**DIRECT_OUTAGE_GPU)  # type: ignore[arg-type]
    direct = DirectRun(stack, direct_double, f"outage-{outage_s:.0f}-direct")
    direct.start()  # converting while the stream's worker starts
    timeline: dict[str, float] = {}

    def damage(stream: Stream, row: Row) -> float:
        wait_completed(stream.double, 3)
        direct_double.control.wait_for(timeout=120, completed=1)
        for double in (stream.double, direct_double):
            double.control.set_health("down")
        timeline["down"] = time.time()
        time.sleep(outage_s)  # the outage itself
        for double in (stream.double, direct_double):
            double.control.set_health("ok")
        timeline["up"] = time.time()
        gate = "recognize: stopped taking records" in stream.worker_logs()
        row.observed = (
            "the recognize role stopped taking pages (gate closed) and resumed"
            if gate
            else "pages waited in the client's retries (gate not needed)"
        )
        return time.time()

    stream_row = stream_case(
        stack,
        f"outage-{outage_s:.0f}",
        label,
        damage,
        expected="documents wait, then all 8 complete equal to the baseline; 0 fallback pages",
        gpu=OUTAGE_GPU,
        group="Model outage",
    )
    direct.join(900.0)
    direct_row = _direct_row(stack, direct, outage_s, budget_s, label, timeline)
    direct_row.duration_s = time.monotonic() - began
    direct_double.proc.stop()
    return [stream_row, direct_row]


def _direct_row(
    stack: Stack,
    direct: DirectRun,
    outage_s: float,
    budget_s: float,
    label: str,
    timeline: dict[str, float],
) -> Row:
    waits = outage_s < budget_s
    row = Row(
        group="Model outage",
        case=label,
        driver="ocrflux convert",
        expected=(
            "waits within the budget, then completes (exit 0) equal to the baseline"
            if waits
            else "fails clearly after the budget: exit 1, failed vllm_unavailable, no degraded "
            "result"
        ),
    )
    row.submitted = len(DIRECT_DOCUMENTS)
    seen = []
    for doc in DIRECT_DOCUMENTS:
        run = direct.finished.get(doc)
        result = direct.result(doc)
        if run is None or result is None:
            row.lost += 1
            row.miss(f"{doc}: no result")
            continue
        row.peak_rss_mib[f"convert {doc}"] = run.peak_rss_mib
        row.fallback_pages += len(result.fallback_pages)
        code = result.error.code if result.error else None
        seen.append(f"{doc}: exit {run.exit_code}, {result.status}{' ' + code if code else ''}")
        if result.status == "completed":
            row.completed += 1
        elif result.status == "partial":
            row.partial += 1
            row.degraded_by_outage += 1
        else:
            row.failed += 1
        baseline = stack.corpus.baseline[doc].document_text
        if waits:
            if run.exit_code != 0 or result.document_text != baseline:
                row.miss(f"{doc} did not complete equal to the baseline")
            if "up" in timeline:
                recovery = max(0.0, direct.ended_at[doc] - timeline["up"])
                row.recovery_s = max(row.recovery_s or 0.0, recovery)
        elif run.exit_code != 1 or result.status != "failed" or code != "vllm_unavailable":
            row.miss(f"{doc} did not fail with vllm_unavailable and exit 1")
        if not waits and "down" in timeline:
            seen[-1] += f" after {direct.ended_at[doc] - timeline['down']:.0f} s of outage"
    row.observed = "; ".join(seen)
    if not row.holds:
        row.evidence = "\n".join(
            log_excerpt(run.stderr) for run in direct.finished.values() if run.stderr
        )
    return row
