"""The stream benchmarks' shared harness: a Kafka broker, the OCRFlux-3B test double and worker
processes, each started here and ended by its PID; the client SDK with a results watcher; CPU
and memory readings of those processes; generated documents.

Nothing is found or ended by name, and everything listens on 127.0.0.1. Set
`BENCH_KAFKA_BOOTSTRAP_SERVERS` to use a running broker instead of starting one (its CPU is
then not measured).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pymupdf
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench import ideal
from bench.report import BENCHMARKS, Section, write_section
from connectors.client import OcrfluxClient
from deploy import kafka_broker
from deploy.processes import stop_pid
from ocrflux.convert import convert_document
from ocrflux.engines.vllm import VllmEngine
from ocrflux.vllm_client import VllmClient
from schemas.options import ConversionOptions
from schemas.records import ResultRecord, decode
from schemas.results import DocumentResult
from streams.blobstore import BlobSettings
from streams.kafka import KafkaSettings, ensure_topics
from tests.fakes.control import ControlClient
from tests.fakes.gpu import ServiceTime

REPO = Path(__file__).resolve().parent.parent
MODEL = "ChatDOC/OCRFlux-3B"
PARTITIONS = 4
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0
#: What the benchmarks ask of every document unless they say otherwise: one model call per
#: page, so that pages per second and model calls per second are the same number.
NO_MERGE = ConversionOptions(skip_cross_page_merge=True)
_WORDS = [
    "stream",
    "page",
    "table",
    "merge",
    "model",
    "vector",
    "kafka",
    "record",
    "broker",
    "partition",
    "offset",
    "column",
]


# --- processes ---------------------------------------------------------------------------------


class Proc:
    """A child process we started: its CPU time and memory, ended by PID."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes] | None, pid: int, log: Path):
        self.name = name
        self.popen = popen
        self.pid = pid
        self.log = log
        self.ps = psutil.Process(pid)

    def cpu_s(self) -> float:
        """User + system CPU seconds used so far: all threads, and every child process's (a
        worker's render processes are its work too), living or ended."""
        times = self.ps.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in self.ps.children(recursive=True):
            try:
                child_times = child.cpu_times()
            except psutil.NoSuchProcess:  # ended just now: counted once its parent reaps it
                continue
            total += child_times.user + child_times.system
        return float(total)

    def rss_mb(self) -> float:
        return float(self.ps.memory_info().rss) / 2**20

    def reset_peak(self) -> None:
        """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def peak_mb(self) -> float:
        """Peak resident set size since start or the last `reset_peak` (VmHWM)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmHWM for {self.name}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None if self.popen is not None else self.ps.is_running()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        if self.popen is None:
            stop_pid(self.pid, timeout_s)
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def start_python(name: str, args: Sequence[str], log_dir: Path, env: Mapping[str, str]) -> Proc:
    log = log_dir / f"{name}.log"
    with log.open("ab") as out:
        popen = subprocess.Popen(
            [sys.executable, *args],
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Proc(name, popen, popen.pid, log)


def wait_for_log(proc: Proc, texts: Sequence[str], timeout_s: float = READY_TIMEOUT_S) -> None:
    """Until any of `texts` shows in the process's log."""
    deadline = time.monotonic() + timeout_s
    while not any(text in proc.log_text() for text in texts):
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name}: none of {texts} after {timeout_s:.0f}s")
        time.sleep(0.1)  # poll interval on the log file


@dataclass
class Broker:
    bootstrap: str
    version: str
    proc: Proc | None  # None: a broker we did not start (not measured)


@contextmanager
def kafka(work: Path) -> Iterator[Broker]:
    """A single-node Kafka broker for the run (or BENCH_KAFKA_BOOTSTRAP_SERVERS)."""
    given = os.environ.get("BENCH_KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield Broker(given, "external", None)
        return
    state = kafka_broker.start_broker(work / "kafka")
    try:
        yield Broker(
            state.bootstrap, state.version, Proc("kafka", None, state.pid, Path(state.log_file))
        )
    finally:
        stop_pid(state.pid)


@dataclass
class Double:
    proc: Proc
    url: str
    control: ControlClient


def start_double(
    log_dir: Path,
    *,
    capacity: int,
    service_time: float,
    jitter: float = 0.0,
    seed: int = 1,
    page_key: str = "bytes",
) -> Double:
    """The OCRFlux-3B test double as a process, identifying pages by their PNG bytes (cheap)."""
    port_file = log_dir / f"double-{uuid.uuid4().hex[:8]}.port"
    args = [
        "-m",
        "tests.fakes.ocrflux_server",
        "--port",
        "0",
        "--capacity",
        str(capacity),
        "--service-time",
        str(service_time),
        "--service-jitter",
        str(jitter),
        "--seed",
        str(seed),
        "--page-key",
        page_key,
        "--port-file",
        str(port_file),
        "--log-level",
        "WARNING",
    ]
    proc = start_python("double", args, log_dir, {})
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not port_file.exists():
        if not proc.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the test double did not start:\n{proc.log_text()[-2000:]}")
        time.sleep(0.05)  # poll interval while the double starts
    url = f"http://127.0.0.1:{port_file.read_text().strip()}"
    return Double(proc, url, ControlClient(url))


def configure_double(double: Double, capacity: int, mean: float, jitter: float, seed: int) -> None:
    double.control.configure(
        capacity=capacity, service_time={"mean": mean, "jitter": jitter, "seed": seed}
    )
    double.control.reset("stats")


# --- the pipeline ------------------------------------------------------------------------------

#: Calls in flight from one worker, for every benchmark. More than C keeps a request
#: waiting at the double whenever a slot frees, as vLLM's own queue does: with exactly C, each
#: freed slot idles while the worker turns its answer around (about 10 ms; at C=128 and 4 s every
#: slot was busy only 61% of the time although 127 of 128 were). Pages need about 3 C: with the
#: merge on, detections share the GPU's first-come queue, and with only C + 25% pages
#: outstanding the recognize worker was held back while detections filled the queue, so the last
#: pages (and everything that waits on them) started late: the C=128 saturation row took 75.9 s
#: with 160 (91.6% of the ideal) and 72.6 s with 384 (95.7%), as a simulation of both queues
#: predicted (75.8 and 72.9 s). Merge calls stay at 160: with more, detections crowd the pages
#: again (simulated 74.8 s with 384).
WORKER_ENV = {
    "OCRFLUX_RECOGNIZE_CONCURRENCY": "384",
    "OCRFLUX_MERGE_CONCURRENCY": "160",
    "VLLM_MAX_INFLIGHT": "384",
}


def worker_settings() -> str:
    return ", ".join(f"`{name}={value}`" for name, value in WORKER_ENV.items()) + (
        " (about 3x the largest C: see bench/harness.py)"
    )


#: Worker layouts: each entry is one worker process and the roles it runs.
SEPARATE = {"split": "split", "recognize": "recognize", "assemble": "assemble"}
SINGLE = {"worker": "split,recognize,assemble"}


class ResultWatcher:
    """Notes when each result arrives on the results topic (a thread with its own consumer)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._cond = threading.Condition()
        self.arrived: dict[str, tuple[float, ResultRecord]] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="result-watcher", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the result watcher did not start")

    def _run(self) -> None:
        topic = self._settings.topics.results
        consumer = Consumer(self._settings.consumer_config(f"bench-watch-{uuid.uuid4().hex}"))
        try:
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            consumer.assign(
                [TopicPartition(topic, p, OFFSET_BEGINNING) for p in metadata.partitions]
            )
            self._ready.set()
            while not self._stop.is_set():
                message = consumer.poll(0.05)
                if message is None or message.error() or message.value() is None:
                    continue
                now = time.monotonic()
                record = decode(message.value() or b"")
                if isinstance(record, ResultRecord):
                    with self._cond:
                        self.arrived.setdefault(record.doc_id, (now, record))
                        self._cond.notify_all()
        finally:
            consumer.close()

    def wait(self, doc_ids: Sequence[str], timeout_s: float) -> dict[str, tuple[float, Any]]:
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while not all(d in self.arrived for d in doc_ids):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    missing = [d for d in doc_ids if d not in self.arrived]
                    raise TimeoutError(f"{len(missing)} results missing after {timeout_s:.0f}s")
                self._cond.wait(remaining)
            return {d: self.arrived[d] for d in doc_ids}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


@dataclass
class Pipeline:
    """Workers on fresh topics (a unique prefix), the client SDK and a result watcher."""

    broker: Broker
    double: Double
    work: Path
    layout: Mapping[str, str]
    env: Mapping[str, str] = field(default_factory=dict)
    workers: dict[str, Proc] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prefix = f"bench-{uuid.uuid4().hex[:10]}"
        self.kafka = KafkaSettings(
            kafka_bootstrap_servers=self.broker.bootstrap,
            ocrflux_topic_prefix=self.prefix,
            kafka_topic_partitions=PARTITIONS,
        )
        self.blob_dir = self.work / "blobs"
        ensure_topics(self.kafka)
        for name, roles in self.layout.items():
            self.workers[name] = self._start(name, roles)
        for name, proc in self.workers.items():
            wait_for_log(proc, ("[^Worker]: Ready", f"worker {self.prefix}-{name} ready"))
        self.client = OcrfluxClient(
            self.kafka, blob_settings=BlobSettings(ocrflux_blob_dir=self.blob_dir)
        )
        self.watcher = ResultWatcher(self.kafka)

    def client_env(self) -> dict[str, str]:
        """What a process needs to use this pipeline (`ocrflux submit`, a worker)."""
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.bootstrap,
            "OCRFLUX_TOPIC_PREFIX": self.prefix,
            "KAFKA_TOPIC_PARTITIONS": str(PARTITIONS),
            "OCRFLUX_BLOB_DIR": str(self.blob_dir),
        }

    def _start(self, name: str, roles: str) -> Proc:
        env = {
            **self.client_env(),
            "VLLM_URL": self.double.url,
            "OCRFLUX_ENGINE": "vllm",
            "OCRFLUX_DATA_DIR": str(self.work / "data" / f"{self.prefix}-{name}"),
            "OCRFLUX_WORKER_ID": f"{self.prefix}-{name}",
            **self.env,
        }
        args = ["-m", "ocrflux.cli", "worker", "--roles", roles, "--loglevel", "info"]
        return start_python(f"{self.prefix}-{name}", args, self.work, env)

    def submit(self, docs: Sequence[tuple[str, bytes]], options: ConversionOptions) -> list[str]:
        return [self.client.submit(data, options, doc_id=doc_id) for doc_id, data in docs]

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds so far of each worker, the broker and the double."""
        found = {name: proc.cpu_s() for name, proc in self.workers.items()}
        if self.broker.proc is not None:
            found["kafka broker"] = self.broker.proc.cpu_s()
        found["test double"] = self.double.proc.cpu_s()
        return found

    def close(self) -> None:
        self.watcher.close()
        self.client.close()
        for proc in self.workers.values():
            proc.stop()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def pipeline(
    broker: Broker, double: Double, work: Path, layout: Mapping[str, str], **env: str
) -> Iterator[Pipeline]:
    started = Pipeline(broker, double, work, layout, env)
    try:
        yield started
    finally:
        started.close()


def pin(pids: Sequence[int], cores: set[int]) -> None:
    """Run these processes, every thread and child process of theirs, on `cores` only."""
    for pid in pids:
        process = psutil.Process(pid)
        for member in [process, *process.children(recursive=True)]:
            for thread in member.threads():
                os.sched_setaffinity(thread.id, cores)


def cpu_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in after if name in before}


# --- documents and the environment -----------------------------------------------------------


def make_pdf(pages: int, tag: str, lines: int = 30, seed: int = 0) -> bytes:
    """A born-digital A4 PDF whose pages all differ: `lines` lines of words on each page."""
    rng = random.Random(f"{tag}-{seed}")
    doc = pymupdf.open()
    for number in range(pages):
        page = doc.new_page(width=595, height=842)
        text = "\n".join(
            f"{tag} page {number + 1} line {n + 1}: "
            + " ".join(rng.choice(_WORDS) for _ in range(9))
            for n in range(lines)
        )
        page.insert_text((56, 64), text, fontsize=10, lineheight=1.6)
    data = doc.tobytes()
    doc.close()
    return data


@contextmanager
def workdir(name: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix=f"ocrflux-{name}-") as folder:
        yield Path(folder)


def best_makespan(calls: int, capacity: int, mean: float, jitter: float, seed: int) -> float:
    """Seconds a perfect client needs for `calls` independent model calls (merge skipped): all
    waiting at time 0, served by `capacity` slots with the double's seeded service times."""
    pages = [ideal.Call("page", 0, n) for n in range(calls)]
    return ideal.makespan(pages, capacity, ServiceTime(mean, jitter, seed))


def requests_by_kind(stats: Mapping[str, Any]) -> dict[str, int]:
    """Model requests the double received, by kind (page, detect, table_merge), any status."""
    return {task: sum(counts.values()) for task, counts in sorted(stats["by_task"].items())}


def kinds_cell(found: Mapping[str, int], needed: Mapping[str, int] | None = None) -> str:
    """`page 8, detect 7, table_merge 2`, with `(needed N)` after a count that differs."""
    names = sorted(set(found) | set(needed or {}), key=lambda k: (k != "page", k != "detect", k))
    cells = []
    for name in names:
        cell = f"{name} {found.get(name, 0):,}"
        if needed is not None and found.get(name, 0) != needed.get(name, 0):
            cell += f" (needed {needed.get(name, 0):,})"
        cells.append(cell)
    return ", ".join(cells)


async def direct_convert(
    url: str, documents: Sequence[bytes], options: ConversionOptions | None = None
) -> list[DocumentResult]:
    """The documents converted concurrently by the direct driver in this process, on one
    client (the way the reference client is used)."""
    async with VllmClient([url], max_inflight_per_server=160) as client:
        engine = VllmEngine(client, model=MODEL, max_tokens=8192, model_max_len=16384)
        return list(
            await asyncio.gather(
                *(convert_document(data, engine=engine, options=options) for data in documents)
            )
        )


def needed_requests(
    double: Double, documents: Sequence[bytes], options: ConversionOptions | None = None
) -> dict[str, int]:
    """The model requests the documents need: what the double counts for the direct driver
    converting them (with an instant model; the double's slots and service time are restored,
    its stats reset)."""
    before = double.control.stats()
    double.control.configure(capacity=128, service_time=0.0)
    double.control.reset("stats")
    try:
        results = asyncio.run(direct_convert(double.url, documents, options))
        failed = [r.status for r in results if r.status != "completed"]
        if failed:
            raise RuntimeError(f"direct driver: {len(failed)} documents {failed[:3]}")
        return requests_by_kind(double.control.stats())
    finally:
        double.control.configure(capacity=before["capacity"], service_time=before["service_time"])
        double.control.reset("stats")


def wait_idle(double: Double, timeout_s: float = 60.0) -> None:
    """Until the double has nothing in flight or queued (the previous run has drained)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = double.control.stats()
        if not stats["in_flight"] and not stats["queued"]:
            return
        time.sleep(0.1)  # poll interval on the double's stats


# --- one batch of documents through the pipeline -----------------------------------------------


@dataclass
class Batch:
    """What one batch measured: wall time from the first submit to the last result, CPU
    seconds of each process, the share of the machine's cores busy, the double's stats."""

    pages: int
    wall_s: float
    cpu_s: dict[str, float]
    machine_busy: float
    double: dict[str, Any]
    submitted_at: float
    results: dict[str, tuple[float, ResultRecord]]
    requests: list[dict[str, Any]]

    @property
    def steady_pages_per_s(self) -> float:
        """Model calls finished per second between the 10th and the 90th percentile of their
        finish times (the double's clock): the rate once the GPU is full, before the tail."""
        finished = sorted(r["finished_at"] for r in self.requests if r["status"] == "200")
        low, high = finished[len(finished) // 10], finished[len(finished) * 9 // 10]
        return (len(finished) * 8 // 10) / (high - low)

    def fill_s(self, capacity: int) -> float:
        """Seconds from the first call's arrival until `capacity` calls were in flight."""
        starts = sorted(r["started_at"] for r in self.requests if r["started_at"] is not None)
        first = min(r["arrived_at"] for r in self.requests)
        return starts[min(capacity, len(starts)) - 1] - first

    @property
    def pages_per_s(self) -> float:
        return self.pages / self.wall_s

    def cores(self, names: Sequence[str]) -> float:
        """Cores the named processes used on average over the batch."""
        return sum(self.cpu_s.get(name, 0.0) for name in names) / self.wall_s

    def ms_per_page(self, name: str) -> float:
        return self.cpu_s[name] * 1000 / self.pages


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    times = psutil.cpu_times()
    total = float(sum(times))
    return total - float(times.idle) - float(getattr(times, "iowait", 0.0)), total


def unique_ids(count: int, label: str) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"{label}-{tag}-{n}" for n in range(count)]


def run_batch(
    pipe: Pipeline,
    documents: Sequence[bytes],
    pages: int,
    options: ConversionOptions = NO_MERGE,
    *,
    label: str = "doc",
    timeout_s: float = 900.0,
) -> Batch:
    """Submit `documents` (under fresh doc_ids) at once and wait for every result."""
    wait_idle(pipe.double)
    pipe.double.control.reset("stats")
    ids = unique_ids(len(documents), label)
    cpu_before, (busy_before, total_before) = pipe.cpu_s(), machine_cpu()
    started = time.monotonic()
    pipe.submit(list(zip(ids, documents, strict=True)), options)
    results = pipe.watcher.wait(ids, timeout_s)
    finished = max(arrival for arrival, _ in results.values())
    busy_after, total_after = machine_cpu()
    cpu = cpu_delta(cpu_before, pipe.cpu_s())
    failed = [
        f"{r.doc_id}: {r.status} {r.error.code if r.error else ''}"
        for _, r in results.values()
        if r.status != "completed"
    ]
    if failed:
        raise RuntimeError(f"{len(failed)} documents did not complete: {failed[:3]}")
    return Batch(
        pages=pages,
        wall_s=finished - started,
        cpu_s=cpu,
        machine_busy=(busy_after - busy_before) / max(total_after - total_before, 1e-9),
        double=pipe.double.control.stats(),
        submitted_at=started,
        results=results,
        requests=pipe.double.control.requests(),
    )


Measurement = Callable[[Broker, Path, bool], Section]


def options(description: str | None, argv: list[str] | None = None) -> argparse.Namespace:
    """`--quick` (a small size, for a smoke check) and `--out FILE` (write there instead)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes, one run: a smoke check")
    parser.add_argument(
        "--out", type=Path, default=BENCHMARKS, help="the Markdown file to write the sections to"
    )
    return parser.parse_args(argv)


def standalone(measure: Measurement, description: str | None = None) -> int:
    """`python -m bench.<module> [--quick] [--out FILE]`: a broker of its own, the measurement,
    its section written."""
    args = options(description)
    with workdir("bench") as work, kafka(work) as broker:
        section = measure(broker, work, args.quick)
    write_section(section.title, section.body, args.out)
    print(section.body)
    return 0


def topic_timestamps(settings: KafkaSettings, topic: str, timeout_s: float = 30.0) -> list[Any]:
    """(key, Kafka timestamp in s, value) of every record of `topic`, from its beginning."""
    name = getattr(settings.topics, topic)
    consumer = Consumer(settings.consumer_config(f"bench-read-{uuid.uuid4().hex}"))
    try:
        partitions = consumer.list_topics(name, timeout=timeout_s).topics[name].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(name, p), timeout=timeout_s)[1]
            for p in partitions
        }
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in partitions])
        remaining = {p for p, end in ends.items() if end > 0}
        found = []
        deadline = time.monotonic() + timeout_s
        while remaining and time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None or message.error():
                continue
            key = message.key().decode() if message.key() else ""
            found.append((key, message.timestamp()[1] / 1000, message.value()))
            if message.offset() + 1 >= ends[message.partition()]:
                remaining.discard(message.partition())
        return found
    finally:
        consumer.close()
