"""What the reliability cases run on: the command's own Kafka broker (which a case may kill and
start again on the same ports), a fresh OCRFlux-3B test double per case, stream deployments on
fresh topics with worker processes we start, kill and restart by PID, and a sampler of the peak
resident memory (VmHWM) of every process under test.

Processes come from `bench.harness` (started and ended by PID, loopback only).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from bench import harness
from bench.harness import Double, Proc, ResultWatcher
from bench.reliability.children import vm_hwm_mib
from bench.reliability.corpus import Corpus, requests_by_task
from bench.reliability.rows import Row
from connectors.client import OcrfluxClient
from schemas.options import ConversionOptions
from schemas.records import ResultRecord
from streams.blobstore import BlobSettings
from streams.kafka import (
    LIBRDKAFKA_LOGGER,
    KafkaSettings,
    LibrdkafkaConfig,
    ensure_topics,
)
from tests.streams.fixtures import OwnBroker

PARTITIONS = 4
#: The worker settings every case starts from (as the stream tests do): a crashed worker's
#: partitions move after 10 s, lost merge jobs are relaunched every second.
WORKER_BASE_ENV = {
    "OCRFLUX_ENGINE": "vllm",
    "OCRFLUX_SESSION_TIMEOUT_S": "10",
    "OCRFLUX_SWEEP_INTERVAL_S": "1",
}
#: Log lines worth quoting: warnings, errors, exceptions, and the CLI's own messages.
_MARKED = re.compile(r"(^|\s)(WARNING|ERROR|CRITICAL)\s|^ocrflux: |^[\w.]+(Error|Exception)(: |$)")
#: How often the memory sampler reads /proc/PID/status.
SAMPLE_INTERVAL_S = 0.25
#: The test double's GPU for the stream cases: a few slots and a short service time, so that a
#: fault or a kill lands while pages are still being recognized.
DOUBLE_CAPACITY = 4
DOUBLE_SERVICE_S = 0.15


# --- memory --------------------------------------------------------------------------------


class PeakSampler:
    """Samples VmHWM of the processes it tracks (and, on request, of their children) in a
    thread, keeping the largest seen per label: a process killed later keeps its last peak."""

    def __init__(self) -> None:
        self._tracked: dict[int, tuple[str, bool]] = {}
        self._peaks: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)
        self._thread.start()

    def track(self, label: str, pid: int, *, children: bool = False) -> None:
        with self._lock:
            self._tracked[pid] = (label, children)
        self._sample_one(pid, label, children)

    def sample(self) -> None:
        """Sample every tracked process now (before one of them is killed, say)."""
        with self._lock:
            tracked = dict(self._tracked)
        for pid, (label, children) in tracked.items():
            self._sample_one(pid, label, children)

    def take(self, labels: Iterable[str] | None = None) -> dict[str, float]:
        """The peaks so far (MiB) of `labels` (default: all), sampled once more now; forgets
        them and their processes."""
        self.sample()
        with self._lock:
            wanted = set(labels) if labels is not None else set(self._peaks)
            found = {label: peak for label, peak in self._peaks.items() if label in wanted}
            for label in wanted:
                self._peaks.pop(label, None)
            self._tracked = {p: t for p, t in self._tracked.items() if t[0] not in wanted}
        return found

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.sample()

    def _sample_one(self, pid: int, label: str, children: bool) -> None:
        pids = [pid]
        if children:
            with contextlib.suppress(psutil.Error):
                pids += [child.pid for child in psutil.Process(pid).children(recursive=True)]
        for one in pids:
            peak = vm_hwm_mib(one)
            if peak is None:
                continue
            name = label if one == pid else f"{label} (child)"
            with self._lock:
                self._peaks[name] = max(self._peaks.get(name, 0.0), peak)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


# --- shared state of the run -----------------------------------------------------------------


@dataclass
class Stack:
    work: Path
    broker: OwnBroker
    corpus: Corpus
    sampler: PeakSampler

    def double(self, name: str, *, capacity: int = DOUBLE_CAPACITY) -> Double:
        """A fresh double, taught the corpus, with a short service time."""
        log_dir = self.work / "logs" / name
        log_dir.mkdir(parents=True, exist_ok=True)
        double = harness.start_double(
            log_dir, capacity=capacity, service_time=DOUBLE_SERVICE_S, page_key="pixels"
        )
        self.corpus.teach(double.control)
        return double


def stream_evidence(row: Row, logs: str) -> str:
    """Each document's result, then the worker log's last warnings and errors."""
    return "\n".join([*row.details, "-- worker log:", log_excerpt(logs)])


def log_excerpt(text: str, lines: int = 12) -> str:
    """The last warnings and errors of a log."""
    picked = [line for line in text.splitlines() if _MARKED.search(line)]
    if not picked:
        return "(no WARNING or ERROR line in the log)"
    return "\n".join(line[:300] for line in picked[-lines:])


# --- a stream deployment -----------------------------------------------------------------------


class QuietKafkaSettings(KafkaSettings):
    """Consumers whose librdkafka messages go to `logging` (the run's log file) instead of
    stderr: a broker that is down on purpose makes thousands of them."""

    def consumer_config(self, group_id: str, **overrides: Any) -> LibrdkafkaConfig:
        return super().consumer_config(group_id, **{"logger": LIBRDKAFKA_LOGGER, **overrides})


@dataclass
class Tally:
    """What the results topic holds for the documents of one case."""

    results: dict[str, ResultRecord]
    copies: dict[str, list[bytes]]
    last_result_at: float | None  # Kafka timestamp (epoch s) of the last result record


@dataclass
class Stream:
    """Fresh topics on the run's broker, workers on them, the client SDK and a result watcher."""

    stack: Stack
    double: Double
    name: str
    env: dict[str, str] = field(default_factory=dict)
    workers: dict[str, Proc] = field(default_factory=dict)
    starts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.prefix = f"rel-{self.name}-{uuid.uuid4().hex[:6]}"
        self.log_dir = self.stack.work / "logs" / self.name
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.kafka = QuietKafkaSettings(
            kafka_bootstrap_servers=self.stack.broker.bootstrap,
            ocrflux_topic_prefix=self.prefix,
            kafka_topic_partitions=PARTITIONS,
        )
        ensure_topics(self.kafka)
        self.blob_dir = self.stack.work / "blobs"
        self.client = OcrfluxClient(
            self.kafka, blob_settings=BlobSettings(ocrflux_blob_dir=self.blob_dir)
        )
        self.watcher = ResultWatcher(self.kafka)

    def worker_env(self, name: str, **extra: str) -> dict[str, str]:
        return {
            **WORKER_BASE_ENV,
            "KAFKA_BOOTSTRAP_SERVERS": self.stack.broker.bootstrap,
            "OCRFLUX_TOPIC_PREFIX": self.prefix,
            "KAFKA_TOPIC_PARTITIONS": str(PARTITIONS),
            "VLLM_URL": self.double.url,
            "OCRFLUX_BLOB_DIR": str(self.blob_dir),
            "OCRFLUX_WORKER_ID": f"{self.prefix}-{name}",
            **self.env,
            **extra,
        }

    def start_worker(self, name: str = "worker") -> Proc:
        """A worker with every role; returns once its log says it is ready (again)."""
        self.starts[name] += 1
        args = ["-m", "ocrflux.cli", "worker", "--loglevel", "info"]
        proc = harness.start_python(f"{name}", args, self.log_dir, self.worker_env(name))
        self.workers[name] = proc
        self.stack.sampler.track(f"{self.name}/{name}", proc.pid)
        self.wait_log(name, f"worker {self.prefix}-{name} ready", self.starts[name])
        return proc

    def kill_worker(self, name: str = "worker") -> None:
        proc = self.workers[name]
        self.stack.sampler.sample()  # its last peak, before it goes
        os.kill(proc.pid, signal.SIGKILL)
        if proc.popen is not None:
            proc.popen.wait()

    def wait_log(self, name: str, text: str, count: int = 1, timeout_s: float = 120.0) -> None:
        proc = self.workers[name]
        deadline = time.monotonic() + timeout_s
        while proc.log_text().count(text) < count:
            if not proc.alive():
                raise RuntimeError(f"{name} exited:\n{proc.log_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: no {text!r} after {timeout_s:.0f} s")
            time.sleep(0.1)  # poll interval on the worker's log

    def submit(self, options: ConversionOptions) -> dict[str, str]:
        """Every corpus document; case name -> doc_id."""
        return {
            case.name: self.client.submit(case.data, options, filename=case.name)
            for case in self.stack.corpus.cases
        }

    def wait_results(self, doc_ids: Sequence[str], timeout_s: float) -> bool:
        try:
            self.watcher.wait(list(doc_ids), timeout_s)
        except TimeoutError:
            return False
        return True

    def tally(self, doc_ids: Sequence[str]) -> Tally:
        wanted = set(doc_ids)
        copies: dict[str, list[bytes]] = {}
        last: float | None = None
        for key, stamp, value in harness.topic_timestamps(self.kafka, "results"):
            if key in wanted:
                copies.setdefault(key, []).append(value)
                last = stamp if last is None else max(last, stamp)
        results = {r.doc_id: r for r in self.client.results(list(wanted), wait=False, timeout_s=30)}
        return Tally(results, copies, last)

    def close(self) -> None:
        self.watcher.close()
        self.client.close()
        for proc in self.workers.values():
            proc.stop()

    def worker_logs(self) -> str:
        return "\n".join(proc.log_text() for proc in self.workers.values())


def result_lines(tally: Tally, ids: dict[str, str]) -> list[str]:
    """One line per document: what the results topic holds for it."""
    lines = []
    for name, doc_id in ids.items():
        result = tally.results.get(doc_id)
        if result is None:
            lines.append(f"{name}: no result")
            continue
        line = f"{name}: {result.status}, {len(tally.copies.get(doc_id, []))} cop(ies)"
        line += f", fallback pages {result.fallback_pages}" if result.fallback_pages else ""
        line += f", document text {len(result.document_text):,} chars"
        if result.error is not None:
            line += f", {result.error.code}: {result.error.message[:160]}"
        lines.append(line)
    return lines


def fill_row(
    row: Row,
    stream: Stream,
    ids: dict[str, str],
    *,
    fault_ended_at: float | None,
    outage_only: bool,
) -> Tally:
    """The counts of `row` from the results topic and the double's stats.

    `outage_only`: the case took the model away or made it push back without ever answering
    badly, so any result that is not exactly the baseline was degraded by the outage."""
    corpus = stream.stack.corpus
    tally = stream.tally(list(ids.values()))
    row.submitted = len(ids)
    for name, doc_id in ids.items():
        result = tally.results.get(doc_id)
        if result is None:
            row.lost += 1
            continue
        copies = tally.copies.get(doc_id, [])
        if len(copies) > 1:
            row.duplicated += 1
            if len(set(copies)) > 1:
                row.differing += 1
        if result.status == "completed":
            row.completed += 1
        elif result.status == "partial":
            row.partial += 1
        else:
            row.failed += 1
        if result.error is not None:
            row.codes[result.error.code] = row.codes.get(result.error.code, 0) + 1
        row.fallback_pages += len(result.fallback_pages)
        same = (
            result.status == "completed"
            and result.document_text == corpus.baseline[name].document_text
        )
        row.equal_to_baseline += same
        if outage_only and not same:
            row.degraded_by_outage += 1
    row.details = result_lines(tally, ids)
    if fault_ended_at is not None and tally.last_result_at is not None:
        row.recovery_s = max(0.0, tally.last_result_at - fault_ended_at)
    stats = stream.double.control.stats()
    row.requests = requests_by_task(stats)
    row.answered = requests_by_task(stats, "200")
    row.needed = dict(corpus.needed)
    return tally
