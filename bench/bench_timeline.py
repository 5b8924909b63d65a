"""One 8-page document through Kafka, hop by hop (`python -m bench.bench_timeline`).

`ocrflux submit --wait` is timed from its process start (the split, recognize and assemble
workers already warm) to its exit, and `ocrflux convert` (the direct driver, in-process) on
the same kind of document against the same double. The document (bench/corpus.py) needs 8
page calls, 7 detections and 2 chained table merges; at C=8 and exactly 0.25 s a call its
lower bound is 1.0 s: one page wave, one detection wave, two table merges one after the other.

Where the time goes comes from the Kafka timestamps of the document's records (CreateTime:
when each producer sent it) and the double's request log (when each model call arrived, got
its slot and was answered), on one clock: every process runs on this machine. For each call:
*ready*: when the calls it depends on had been answered (what a perfect scheduler waits for);
*inputs on Kafka*: when the records the pipeline starts it from were sent (a page: its page
record; a detection: both page results; a table merge: its detection and the link after it
in the chain); *sent*: its arrival at the double; *answered*: the double's answer; *record*:
the record that carries the answer back (page-results).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from bench import corpus, harness, ideal
from bench.harness import Broker, Pipeline
from bench.report import Section, Spread, goal, header, table
from ocrflux.tables import is_table
from schemas.options import ConversionOptions
from schemas.records import DocumentRequest, PageDone, PageTask, PairsDetected, TableMerged, decode
from tests.fakes.truth import text_key
from tests.fakes.validation import payload_key
from tests.scenarios import page_images

TITLE = "Stream pipeline: one 8-page document, hop by hop"
COMMAND = "python -m bench.bench_timeline"
CAPACITY, SERVICE_S = 8, 0.25
PAGES = corpus.GROUP
FULL_RUNS, QUICK_RUNS = 5, 1
CONVERT_GOAL_S = 0.3  # over the lower bound plus rendering
STREAM_GOAL_S = 0.2  # more than `convert`
CALL_TIMEOUT_S = 120.0
_CONVERT_FORKS = "ocrflux.cli, ocrflux.head_start"
_CONVERT_READS = "ocrflux.failures, ocrflux.convert_command"
CONVERT_IMPORTS = {
    "`ocrflux convert`'s imports before it forks its head start (`ocrflux.cli`, "
    "`ocrflux.head_start`, timed in-process)": ("imports", _CONVERT_FORKS, "", True),
    "`ocrflux convert`'s imports after the fork, before the head start gets the document "
    "(pydantic, settings: `ocrflux.failures`, `ocrflux.convert_command`)": (
        "imports",
        _CONVERT_READS,
        _CONVERT_FORKS,
        True,
    ),
    "`ocrflux convert`'s imports while the head start renders (`ocrflux.convert`, "
    "`ocrflux.engines`)": (
        "imports",
        "ocrflux.convert, ocrflux.engines",
        f"{_CONVERT_FORKS}, {_CONVERT_READS}",
        True,
    ),
}
#: Start-up rows: what a command costs before it does any work. `--version` is a whole process
#: (interpreter and the CLI's imports); the others time the command's imports inside a process
#: (after the modules of the third item, untimed; with the collector paused where the command
#: pauses it, the fourth), since a process that imports them also pays about 0.25 s of teardown
#: freeing them, which the commands skip (`ocrflux.cli._exit_now`).
STARTUP = {
    "`ocrflux --version` (interpreter and imports)": ("process", "--version", "", False),
    **CONVERT_IMPORTS,
    "`ocrflux submit`'s imports (`connectors.cli_commands`, timed in-process)": (
        "imports",
        "ocrflux.cli, connectors.cli_commands",
        "",
        False,
    ),
}

#: A call of the document: (kind, first page); table merges by the first page of their pair.
CallId = tuple[str, int]


@dataclass
class Run:
    """Seconds after the command's start."""

    wall: float
    marks: dict[str, float] = field(default_factory=dict)  # document, result, ...
    calls: dict[CallId, dict[str, float]] = field(default_factory=dict)


def measure(broker: Broker, work: Path, quick: bool = False) -> Section:
    started = time.time()
    runs = QUICK_RUNS if quick else FULL_RUNS
    documents = corpus.corpus(2 * runs + 1, PAGES, "timeline")
    warm, submitted, converted = documents[0], documents[1 : runs + 1], documents[runs + 1 :]
    double = harness.start_double(work, capacity=CAPACITY, service_time=SERVICE_S)
    try:
        corpus.register(double.control, documents)
        needed = harness.needed_requests(double, [warm.case.data], ConversionOptions())
        calls = corpus.calls([warm])
        if needed != ideal.counts(calls):
            raise RuntimeError(f"the ideal counts {ideal.counts(calls)}, the driver {needed}")
        with harness.pipeline(broker, double, work, harness.SEPARATE, **harness.WORKER_ENV) as pipe:
            harness.run_batch(pipe, [warm.case.data], PAGES, ConversionOptions(), label="warm")
            stream = [submit_run(pipe, document, work, needed) for document in submitted]
        convert = [convert_run(double, document, work, needed) for document in converted]
        startup = {
            label: [startup_s(how, what, after, paused) for _ in range(runs)]
            for label, (how, what, after, paused) in STARTUP.items()
        }
    finally:
        double.proc.stop()
    bound = ideal.lower_bound(calls, CAPACITY, SERVICE_S)
    rendering = statistics.median(render_s(d) for d in converted)
    return report(stream, convert, startup, bound, rendering, needed, broker, started, quick)


def render_s(document: corpus.Document) -> float:
    """Seconds to open the document and render its pages with the production renderer."""
    began = time.monotonic()
    page_images(document.case.data)
    return time.monotonic() - began


def startup_s(how: str, what: str, after: str, paused: bool) -> float:
    """Seconds of a `STARTUP` row: a whole `ocrflux` process, or importing modules in one
    (`after` imported first, untimed; `paused`: with the collector paused, `ocrflux.collector`)."""
    if how == "process":
        return command_s(["-m", "ocrflux.cli", what], {})
    code = f"import time; t = time.perf_counter(); import {what}; print(time.perf_counter() - t)"
    if after:
        code = f"import {after}; {code}"
    if paused:
        code = f"from ocrflux import collector; collector.pause(); {code}"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=harness.REPO,
        capture_output=True,
        text=True,
        timeout=CALL_TIMEOUT_S,
        check=True,
    )
    return float(done.stdout.strip())


def command_s(args: list[str], env: dict[str, str]) -> float:
    """Wall seconds of one command (python ARGS), checked to succeed."""
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, *args],
        cwd=harness.REPO,
        env={**os.environ, **env},
        capture_output=True,
        timeout=CALL_TIMEOUT_S,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{args[:3]} exited {done.returncode}: {done.stderr.decode()[-2000:]}")
    return time.monotonic() - began


def _check_output(path: Path, document: corpus.Document) -> None:
    if path.read_text(encoding="utf-8").rstrip("\n") != document.expected:
        raise RuntimeError(f"{path}: not the expected document")


def submit_run(
    pipe: Pipeline, document: corpus.Document, work: Path, needed: dict[str, int]
) -> Run:
    source = work / document.case.name
    source.write_bytes(document.case.data)
    out = work / "submitted"
    harness.wait_idle(pipe.double)
    pipe.double.control.reset("stats")
    began = time.time()
    wall = command_s(
        ["-m", "ocrflux.cli", "submit", "--wait", "--out", str(out), str(source)],
        pipe.client_env(),
    )
    _check_output(out / source.with_suffix(".md").name, document)
    stats = pipe.double.control.stats()
    if harness.requests_by_kind(stats) != needed:
        raise RuntimeError(f"submit: requests {harness.requests_by_kind(stats)}, needed {needed}")
    run = Run(wall)
    doc_id = _records(pipe, document, run, began)
    _model_calls(pipe, document, run, began, stats["started_unix"])
    if not doc_id:
        raise RuntimeError("the document's records were not found")
    return run


def _records(pipe: Pipeline, document: corpus.Document, run: Run, began: float) -> str:
    """The Kafka timestamps of the document's records (seconds after `began`); its doc_id."""
    doc_id = ""
    for _, stamp, value in harness.topic_timestamps(pipe.kafka, "documents"):
        record = decode(value)
        if isinstance(record, DocumentRequest) and record.filename == document.case.name:
            doc_id = record.doc_id or ""
            run.marks["document record sent"] = stamp - began
    for topic in ("pages", "page_results", "results"):
        for key, stamp, value in harness.topic_timestamps(pipe.kafka, topic):
            if not doc_id or key.split("/")[0] != doc_id:
                continue
            at = stamp - began
            if topic == "results":
                run.marks["result record sent"] = at
                continue
            record = decode(value)
            if isinstance(record, PageTask):
                run.calls.setdefault(("page", record.page), {})["page record"] = at
            elif isinstance(record, PageDone):
                run.calls.setdefault(("page", record.result.index), {})["record"] = at
            elif isinstance(record, PairsDetected):
                run.calls.setdefault(("detect", record.first), {})["record"] = at
            elif isinstance(record, TableMerged):
                run.calls.setdefault(("table_merge", record.page), {})["record"] = at
    return doc_id


def _subjects(document: corpus.Document) -> dict[str, CallId]:
    """The double's `page` key or `subject` prefix of each call of the document."""
    case = document.case
    found: dict[str, CallId] = {
        payload_key(png): ("page", p) for p, png in enumerate(page_images(case.data))
    }
    for p in range(document.pages - 1):
        found[f"{text_key(case.elements(p))}/{text_key(case.elements(p + 1))}"] = ("detect", p)
    for p, pairs in case.merges.items():
        first = case.elements(p)[pairs[0][0]]
        if is_table(first):
            found[text_key([first])] = ("table_merge", p)
    return found


def _model_calls(
    pipe: Pipeline, document: corpus.Document, run: Run, began: float, double_epoch: float
) -> None:
    subjects = _subjects(document)
    for request in pipe.double.control.requests():
        if request["task"] == "page":
            call = subjects.get(request["page"])
        else:
            subject = request["subject"] or ""
            call = subjects.get(subject) or subjects.get(subject.split("/")[0])
        if call is None:
            continue
        times = run.calls.setdefault(call, {})
        for name, field_name in (
            ("sent", "arrived_at"),
            ("started", "started_at"),
            ("answered", "finished_at"),
        ):
            times[name] = double_epoch + request[field_name] - began
    _readiness(document, run)


def _readiness(document: corpus.Document, run: Run) -> None:
    """*ready* (dependencies answered) and *inputs on Kafka* of every call."""
    calls = run.calls
    for (kind, page), times in calls.items():
        if kind == "page":
            times["ready"] = 0.0
            times["inputs on Kafka"] = times.get("page record", float("nan"))
        elif kind == "detect":
            both = [calls.get(("page", p), {}) for p in (page, page + 1)]
            times["ready"] = max(t.get("answered", float("nan")) for t in both)
            times["inputs on Kafka"] = max(t.get("record", float("nan")) for t in both)
    merges = sorted((p for kind, p in calls if kind == "table_merge"), reverse=True)
    for page in merges:  # the last page pair first: the link after it is already done
        times = calls[("table_merge", page)]
        before = [calls.get(("detect", page), {})]
        if ("table_merge", page + 1) in calls:
            before.append(calls[("table_merge", page + 1)])
        times["ready"] = max(t.get("answered", float("nan")) for t in before)
        times["inputs on Kafka"] = max(t.get("record", float("nan")) for t in before)


def convert_run(
    double: harness.Double, document: corpus.Document, work: Path, needed: dict[str, int]
) -> Run:
    source = work / document.case.name
    source.write_bytes(document.case.data)
    out = work / "converted" / source.with_suffix(".md").name
    harness.wait_idle(double)
    double.control.reset("stats")
    began = time.time()
    wall = command_s(
        ["-m", "ocrflux.cli", "convert", str(source), "-o", str(out), "--engine", "vllm"],
        {"VLLM_URL": double.url},
    )
    _check_output(out, document)
    stats = double.control.stats()
    if harness.requests_by_kind(stats) != needed:
        raise RuntimeError(f"convert: requests {harness.requests_by_kind(stats)}, needed {needed}")
    run = Run(wall)
    requests = double.control.requests()
    epoch = stats["started_unix"]
    run.marks["first model call"] = min(epoch + r["arrived_at"] for r in requests) - began
    run.marks["last answer"] = max(epoch + r["finished_at"] for r in requests) - began
    return run


def _ms(values: list[float]) -> str:
    values = [v for v in values if v == v]  # without NaN (a stamp not found)
    return f"{statistics.median(values) * 1000:.0f}" if values else ""


COLUMNS = ("ready", "inputs on Kafka", "sent", "answered", "record")
LABELS = {"page": "page {}", "detect": "detection {}-{}", "table_merge": "table merge {}-{}"}


def report(
    stream: list[Run],
    convert: list[Run],
    startup: dict[str, list[float]],
    bound: float,
    rendering: float,
    needed: dict[str, int],
    broker: Broker,
    started: float,
    quick: bool,
) -> Section:
    submit = Spread.of([r.wall for r in stream])
    direct = Spread.of([r.wall for r in convert])
    marks: dict[str, list[float]] = defaultdict(list)
    for run in stream:
        for name, at in run.marks.items():
            marks[name].append(at)
    converted: dict[str, list[float]] = defaultdict(list)
    for run in convert:
        for name, at in run.marks.items():
            converted[name].append(at)
    limit = bound + rendering + CONVERT_GOAL_S
    summary = [
        *([label, Spread.of(values).cell("{:.2f}"), ""] for label, values in startup.items()),
        [
            "`ocrflux submit --wait`: start to the document record sent",
            Spread.of(marks["document record sent"]).cell("{:.2f}"),
            "",
        ],
        [
            "`ocrflux submit --wait`: start to the result record sent",
            Spread.of(marks["result record sent"]).cell("{:.2f}"),
            "",
        ],
        ["`ocrflux submit --wait`: start to exit", submit.cell("{:.2f}"), ""],
        [
            "`ocrflux convert`: start to the first model call",
            Spread.of(converted["first model call"]).cell("{:.2f}"),
            "",
        ],
        [
            "`ocrflux convert`: start to the last answer",
            Spread.of(converted["last answer"]).cell("{:.2f}"),
            "",
        ],
        [
            "`ocrflux convert`: start to exit",
            direct.cell("{:.2f}"),
            f"<= {limit:.2f} s (lower bound {bound:.2f} + rendering {rendering:.2f} + "
            f"{CONVERT_GOAL_S}): " + goal(direct.mid <= limit),
        ],
        [
            "`ocrflux submit --wait` over `ocrflux convert`",
            f"{submit.mid - direct.mid:.2f}",
            f"<= {STREAM_GOAL_S} s: " + goal(submit.mid - direct.mid <= STREAM_GOAL_S),
        ],
    ]
    keys = sorted(
        {call for run in stream for call in run.calls},
        key=lambda c: (
            ["page", "detect", "table_merge"].index(c[0]),
            -c[1] if c[0] == "table_merge" else c[1],
        ),
    )
    timeline = [["document record sent", "", "", _ms(marks["document record sent"]), "", ""]]
    for kind, page in keys:
        values = [run.calls.get((kind, page), {}) for run in stream]
        label = LABELS[kind].format(page + 1, page + 2)
        timeline.append(
            [label, *(_ms([v.get(column, float("nan")) for v in values]) for column in COLUMNS)]
        )
    timeline.append(["result record sent", "", "", "", "", _ms(marks["result record sent"])])
    timeline.append(["`submit` exits", "", "", "", "", _ms([r.wall for r in stream])])
    notes = [
        f"Test double: {CAPACITY} slots, exactly {SERVICE_S} s a call; an 8-page PDF (bench/"
        f"corpus.py: a paragraph over pages 1-2, a table over 4-6, a word hyphenated over 7-8) "
        f"needing {harness.kinds_cell(needed)} model calls: lower bound {bound:.2f} s. "
        f"{len(stream)} runs of each command, a different document each time (a repeated "
        "document would be answered from its earlier result); outputs checked against the "
        "expected document, model requests against the direct driver's count.",
        "Workers: split, recognize and assemble as separate processes, warm (a document "
        f"converted before); {harness.worker_settings()}. `ocrflux convert` runs the direct "
        "driver in its own process (`--engine vllm`); its pages render in its head start, a "
        "process it forks as soon as its command line is parsed and hands the document once "
        "read, while it imports the driver (`ocrflux.head_start`); its collector is paused "
        "while it loads (`ocrflux.collector`). *Rendering*: opening the PDF and rendering its "
        "8 pages in one process (the production renderer), measured here.",
    ]
    body = [
        header(COMMAND, broker.version, started, notes, quick=quick),
        "",
        "Seconds (min / **median** / max over the runs):",
        "",
        table(["", "s", "goal"], summary),
        "",
        "The `submit` document's calls, ms after the command started (medians over the runs; "
        "the columns are defined in the module docstring: *ready* = its dependencies answered, "
        "*inputs on Kafka* = the records it starts from sent, *sent* / *answered* at the "
        "double, *record* = the answer's record sent):",
        "",
        table(["call", *COLUMNS], timeline),
    ]
    imports = sum(Spread.of(startup[label]).mid for label in CONVERT_IMPORTS)
    goals = [
        (
            "8-page document, C=8, 0.25 s: `ocrflux convert` within 0.3 s of the lower bound "
            "plus rendering",
            f"{direct.mid:.2f} s (lower bound {bound:.2f} s, rendering {rendering:.2f} s, "
            f"first model call after {Spread.of(converted['first model call']).mid:.2f} s, "
            f"{imports:.2f} s of it importing)",
            goal(direct.mid <= limit),
        ),
        (
            "8-page document: `ocrflux submit --wait` within 0.2 s more than `convert`",
            f"{submit.mid:.2f} s ({submit.mid - direct.mid:+.2f} s)",
            goal(submit.mid - direct.mid <= STREAM_GOAL_S),
        ),
    ]
    return Section(TITLE, "\n".join(body), goals)


def main() -> int:
    return harness.standalone(measure, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
