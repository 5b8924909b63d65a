"""The bad-input catalogue through the three drivers: `ocrflux convert FILE --json`, the API's
`POST /convert/file` (direct mode) and `ocrflux submit FILE --wait` (a worker on the run's
broker). Each driver's answer is reduced to an `Outcome` and compared with the kind's expected
one; a `failed` document in the stream must also have a record on the dlq topic with the same
code. Afterwards the API and the worker must still be running and convert a good document.
"""

from __future__ import annotations

import http.client
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import Double
from bench.reliability.bad_inputs import CATALOGUE, LIMITS_ENV, BadInput, Outcome
from bench.reliability.children import Api, run_measured, start_api
from bench.reliability.corpus import requests_by_task
from bench.reliability.rows import Row
from bench.reliability.stack import Stack, Stream, log_excerpt
from ocrflux.errors import ERROR_CLASSES
from ocrflux.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL
from schemas.records import DlqRecord, decode
from schemas.results import DocumentResult

COMMAND_TIMEOUT_S = 180.0
BOUNDARY = b"reliability-boundary"
#: Statuses of the API's own refusals (connectors/api/errors.py) that are not OcrfluxErrors.
API_STATUSES = {"invalid_request": 422, "body_timeout": 408, "saturated": 503}
EXIT_FOR = {"completed": EXIT_OK, "partial": EXIT_PARTIAL, "failed": EXIT_FAILED}
GOOD = BadInput("a good document", b"good.pdf", lambda: b"", (Outcome("completed"),))
#: Commands run at once (each is a Python process that spends a second or two importing).
PARALLEL_COMMANDS = 2


@dataclass
class Seen:
    """One driver's answer for one kind."""

    outcome: Outcome | None
    shown: str
    ok: bool
    peak_rss_mib: float = 0.0
    doc_id: str | None = None
    exit_code: int | None = None
    detail: str = ""  # what the answer said, for the evidence


@dataclass
class KindResult:
    kind: BadInput
    seen: dict[str, Seen] = field(default_factory=dict)
    dlq: str | None = None  # the dlq record's code, for a stream document

    @property
    def holds(self) -> bool:
        return all(seen.ok for seen in self.seen.values())


def matches(
    observed: Outcome | None, warnings: list[str], kind: BadInput, *, codes_shown: bool = True
) -> bool:
    """Whether `observed` is one of the kind's expected outcomes. `codes_shown` is False for the
    API's guide-shaped 200 answer, which names no code for a completed or partial result."""
    if observed is None:
        return False
    return any(
        observed.status == expected.status
        and (observed.code == expected.code or (not codes_shown and observed.status != "failed"))
        and (expected.warning is None or expected.warning in warnings)
        for expected in kind.expected
    )


def outcome_of(result: DocumentResult) -> tuple[Outcome, list[str]]:
    warnings = [warning.code for warning in result.warnings]
    code = result.error.code if result.error is not None else None
    return Outcome(result.status, code, warnings[0] if warnings else None), warnings


def expected_http(outcome: Outcome) -> int:
    if outcome.status != "failed" or outcome.code is None:
        return 200
    if outcome.code in API_STATUSES:
        return API_STATUSES[outcome.code]
    return ERROR_CLASSES[outcome.code].http_status


# --- the drivers --------------------------------------------------------------------------------


def convert(kind: BadInput, path: Path, env: dict[str, str], log_dir: Path, n: int) -> Seen:
    out = log_dir / f"convert-{n:02d}.json"
    args = ["-m", "ocrflux.cli", "convert", os.fsdecode(path), "--json", "-o", str(out)]
    run = run_measured(args, env, log_dir, f"convert-{n:02d}", COMMAND_TIMEOUT_S)
    if run.exit_code is None:
        return Seen(None, f"no exit within {COMMAND_TIMEOUT_S:.0f} s", False, run.peak_rss_mib)
    if not out.exists() or not out.read_text().strip():
        tail = run.stderr.strip().splitlines()[-1:] or ["no output"]
        return Seen(None, f"exit {run.exit_code}: {tail[0][:160]}", False, run.peak_rss_mib)
    outcome, warnings = outcome_of(DocumentResult.model_validate_json(out.read_text()))
    ok = matches(outcome, warnings, kind) and run.exit_code == EXIT_FOR[outcome.status]
    return Seen(outcome, f"exit {run.exit_code}, {outcome}", ok, run.peak_rss_mib)


def multipart(files: list[tuple[bytes, bytes]]) -> bytes:
    """A multipart/form-data body with one `file` part per (file name bytes, data)."""
    body = b""
    for filename, data in files:
        body += (
            b"--" + BOUNDARY + b"\r\n"
            b'Content-Disposition: form-data; name="file"; filename="' + filename + b'"\r\n'
            b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n"
        )
    return body + b"--" + BOUNDARY + b"--\r\n"


def post_file(api: Api, files: list[tuple[bytes, bytes]]) -> tuple[int, dict[str, Any]]:
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=COMMAND_TIMEOUT_S)
    try:
        connection.request(
            "POST",
            "/convert/file",
            body=multipart(files),
            headers={"Content-Type": "multipart/form-data; boundary=" + BOUNDARY.decode()},
        )
        response = connection.getresponse()
        raw = response.read()
    finally:
        connection.close()
    try:
        return response.status, json.loads(raw)
    except json.JSONDecodeError:
        return response.status, {"raw": raw[:200].decode(errors="replace")}


def via_api(kind: BadInput, data: bytes, api: Api) -> Seen:
    filename = kind.api_filename.encode() if kind.api_filename else kind.filename
    files = [(filename, data)] * (2 if kind.api_only else 1)
    try:
        status, body = post_file(api, files)
    except (OSError, http.client.HTTPException) as exc:
        return Seen(None, f"no answer: {exc}", False)
    warnings = [str(warning.get("code")) for warning in body.get("warnings") or []]
    if status == 200 and body.get("status") == "success":
        fallback = body.get("metadata", {}).get("fallback_pages") or []
        outcome = Outcome(
            "partial" if fallback else "completed", warning=next(iter(warnings), None)
        )
    else:
        outcome = Outcome("failed", body.get("error_code"))
    ok = matches(outcome, warnings, kind, codes_shown=False)
    ok = ok and status == expected_http(kind.expected[0])
    shown = f"HTTP {status}, {outcome}"
    if outcome.status != "failed" and any(e.warning for e in kind.expected) and not warnings:
        shown += " (the answer carries no warning)"
    detail = str(body.get("detail") or body.get("error_detail") or "")[:200]
    return Seen(outcome, shown, ok, detail=detail)


def submit(kind: BadInput, path: Path, stream: Stream, log_dir: Path, n: int) -> Seen:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": stream.kafka.kafka_bootstrap_servers,
        "OCRFLUX_TOPIC_PREFIX": stream.prefix,
        "OCRFLUX_BLOB_DIR": str(stream.blob_dir),
    }
    args = ["-m", "ocrflux.cli", "submit", os.fsdecode(path), "--wait", "--timeout", "120"]
    run = run_measured(args, env, log_dir, f"submit-{n:02d}", COMMAND_TIMEOUT_S)
    lines = run.stdout.splitlines()
    doc_id = lines[0].split()[0] if lines and "  " in lines[0] else None
    if run.exit_code is None or doc_id is None:
        tail = (run.stderr.strip().splitlines() or ["no output"])[-1][:160]
        return Seen(None, f"exit {run.exit_code}: {tail}", False, run.peak_rss_mib)
    # The outcome is read from the results topic afterwards (`judge_submit`), in one thread.
    shown = f"exit {run.exit_code}, no result"
    return Seen(None, shown, False, run.peak_rss_mib, doc_id, run.exit_code)


def judge_submit(kind: BadInput, seen: Seen, result: DocumentResult | None) -> None:
    if result is None:
        return
    outcome, warnings = outcome_of(result)
    seen.outcome = outcome
    seen.ok = matches(outcome, warnings, kind) and seen.exit_code == EXIT_FOR[outcome.status]
    seen.shown = f"exit {seen.exit_code}, {outcome}"


def dlq_codes(stream: Stream) -> dict[str, str]:
    found: dict[str, str] = {}
    for _, _, value in harness.topic_timestamps(stream.kafka, "dlq"):
        record = decode(value)
        if isinstance(record, DlqRecord) and record.doc_id:
            found[record.doc_id] = record.error_code
    return found


# --- the whole matrix ------------------------------------------------------------------------


def write_inputs(folder: Path) -> list[tuple[BadInput, Path, bytes]]:
    written = []
    for n, kind in enumerate(CATALOGUE):
        data = kind.make()
        where = folder / f"{n:02d}"
        where.mkdir(parents=True, exist_ok=True)
        path = Path(os.fsdecode(os.path.join(os.fsencode(where), kind.filename)))
        path.write_bytes(data)
        written.append((kind, path, data))
    return written


def good_document(folder: Path) -> tuple[Path, bytes]:
    data = harness.make_pdf(1, "good after bad")
    path = folder / os.fsdecode(GOOD.filename)
    path.write_bytes(data)
    return path, data


def run(stack: Stack, double: Double) -> tuple[list[Row], list[KindResult]]:
    log_dir = stack.work / "logs" / "bad-input"
    log_dir.mkdir(parents=True, exist_ok=True)
    inputs = write_inputs(stack.work / "bad-inputs")
    good = good_document(stack.work / "bad-inputs")
    results = [KindResult(kind) for kind, _, _ in inputs]
    rows = [
        _convert_all(stack, double, inputs, good, results, log_dir),
        _api_all(stack, double, inputs, good, results, log_dir),
        _submit_all(stack, double, inputs, good, results, log_dir),
    ]
    return rows, results


Inputs = list[tuple[BadInput, Path, bytes]]


def _in_parallel(inputs: Inputs, one: Callable[[int, BadInput, Path], Seen]) -> dict[int, Seen]:
    """`one(n, kind, path)` for every kind a command can take (not the API-only ones)."""
    with ThreadPoolExecutor(PARALLEL_COMMANDS) as pool:
        futures = {
            n: pool.submit(one, n, kind, path)
            for n, (kind, path, _) in enumerate(inputs)
            if not kind.api_only
        }
        return {n: future.result() for n, future in futures.items()}


def _convert_all(
    stack: Stack,
    double: Double,
    inputs: Inputs,
    good: tuple[Path, bytes],
    results: list[KindResult],
    log_dir: Path,
) -> Row:
    began = time.monotonic()
    double.control.reset("stats")
    env = {"VLLM_URL": double.url, "OCRFLUX_ENGINE": "vllm", **LIMITS_ENV}
    seen = _in_parallel(inputs, lambda n, kind, path: convert(kind, path, env, log_dir, n))
    for n, one in seen.items():
        results[n].seen["convert"] = one
    after = convert(GOOD, good[0], env, log_dir, 99)
    return _row(
        "ocrflux convert",
        [results[n] for n in seen],
        "convert",
        good_after=after.ok,
        alive=None,  # each run is its own process: nothing stays up
        peaks=_largest("convert", inputs, seen),
        requests=requests_by_task(double.control.stats()),
        seconds=time.monotonic() - began,
        log="\n".join(one.shown for one in seen.values() if not one.ok),
    )


def _api_all(
    stack: Stack,
    double: Double,
    inputs: Inputs,
    good: tuple[Path, bytes],
    results: list[KindResult],
    log_dir: Path,
) -> Row:
    began = time.monotonic()
    double.control.reset("stats")
    api = start_api(
        "api-bad-input", log_dir, {"VLLM_URL": double.url, "OCRFLUX_ENGINE": "vllm", **LIMITS_ENV}
    )
    stack.sampler.track("api", api.proc.pid, children=True)
    try:
        for n, (kind, _, data) in enumerate(inputs):
            results[n].seen["API"] = via_api(kind, data, api)
        after = via_api(GOOD, good[1], api)
        alive = api.proc.alive()
    finally:
        log = api.proc.log_text()
        api.stop()
    return _row(
        "API /convert/file",
        results,
        "API",
        good_after=after.ok,
        alive=alive,
        peaks=stack.sampler.take(["api", "api (child)"]),
        requests=requests_by_task(double.control.stats()),
        seconds=time.monotonic() - began,
        log=log,
    )


def _submit_all(
    stack: Stack,
    double: Double,
    inputs: Inputs,
    good: tuple[Path, bytes],
    results: list[KindResult],
    log_dir: Path,
) -> Row:
    began = time.monotonic()
    double.control.reset("stats")
    stream = Stream(stack, double, "bad-input", env=dict(LIMITS_ENV))
    try:
        stream.start_worker()
        seen = _in_parallel(inputs, lambda n, kind, path: submit(kind, path, stream, log_dir, n))
        after = submit(GOOD, good[0], stream, log_dir, 99)
        alive = stream.workers["worker"].alive()
        ids = [one.doc_id for one in [*seen.values(), after] if one.doc_id is not None]
        found = {r.doc_id: r for r in stream.client.results(ids, wait=False, timeout_s=60)}
        for n, one in seen.items():
            judge_submit(inputs[n][0], one, found.get(one.doc_id or ""))
        judge_submit(GOOD, after, found.get(after.doc_id or ""))
        codes = dlq_codes(stream)
    finally:
        log = stream.worker_logs()
        stream.close()
    for n, one in seen.items():
        results[n].seen["submit"] = one
        if one.doc_id is None or one.outcome is None:
            continue
        results[n].dlq = codes.get(one.doc_id)
        if one.outcome.status == "failed" and results[n].dlq != one.outcome.code:
            one.ok = False
            one.shown += f"; dlq record: {results[n].dlq or 'none'}"
    peaks = stack.sampler.take([f"{stream.name}/worker"])
    peaks.update(_largest("submit", inputs, seen))
    return _row(
        "ocrflux submit --wait",
        [results[n] for n in seen],
        "submit",
        good_after=after.ok,
        alive=alive,
        peaks=peaks,
        requests=requests_by_task(double.control.stats()),
        seconds=time.monotonic() - began,
        log=log,
    )


def _largest(command: str, inputs: Inputs, seen: dict[int, Seen]) -> dict[str, float]:
    """The peak RSS of the command's most memory-hungry run, named by its input's kind."""
    n = max(seen, key=lambda n: seen[n].peak_rss_mib)
    return {f"{command} (largest: {inputs[n][0].kind})": seen[n].peak_rss_mib}


def _row(
    driver: str,
    results: list[KindResult],
    key: str,
    *,
    good_after: bool,
    alive: bool | None,
    peaks: dict[str, float],
    requests: dict[str, int],
    seconds: float,
    log: str,
) -> Row:
    row = Row(
        group="Bad input",
        case=f"{len(results)} bad-input kinds, then a good document",
        driver=driver,
        expected="each kind's code or status (table below); the service keeps running; a good "
        "document converts afterwards"
        + ("; a dlq record per failed document" if key == "submit" else ""),
    )
    row.submitted = len(results)
    answered = [r.seen[key] for r in results if r.seen[key].outcome is not None]
    row.lost = len(results) - len(answered)
    for seen in answered:
        assert seen.outcome is not None
        status = seen.outcome.status
        row.completed += status == "completed"
        row.partial += status == "partial"
        row.failed += status == "failed"
    wrong = [r.kind.kind for r in results if not r.seen[key].ok]
    running = {None: "every run exited", True: "still running afterwards"}.get(
        alive, "NOT running afterwards"
    )
    row.observed = (
        f"{len(results) - len(wrong)}/{len(results)} as expected; {running}; good document "
        f"{'converted' if good_after else 'NOT converted'}"
    )
    for kind in wrong:
        row.miss(f"unexpected answer for {kind}")
    if alive is False:
        row.miss("the service died")
    if not good_after:
        row.miss("a good document did not convert after the bad ones")
    if wrong or alive is False or not good_after:
        answers = [
            f"{r.kind.kind}: {r.seen[key].shown}"
            + (f" ({r.seen[key].detail})" if r.seen[key].detail else "")
            for r in results
            if not r.seen[key].ok
        ]
        row.evidence = "\n".join([*answers, "-- log:", log_excerpt(log)])
    row.peak_rss_mib = peaks
    row.requests = requests
    row.duration_s = seconds
    return row
