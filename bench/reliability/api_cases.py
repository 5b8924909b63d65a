"""The HTTP API under load and abuse (direct mode, its default settings, against the double):

- 200 concurrent uploads of 5-20 MB each to `/convert/file`: every request is answered, 200 or
  503 with `Retry-After` (admission before the body is read), none lost or hung; the refused
  ones are sent again after their `Retry-After` until every document is converted; the API's
  peak memory stays bounded (uploads are spooled to disk, not held).
- 50 slow clients: each sends its headers and part of a 5 MB body, then nothing. Each gets 408
  within the body-read timeout, and `/health` keeps answering meanwhile (latency p50/p99),
  as does an ordinary conversion.

Requests go over raw loopback connections with a `Content-Length`, as curl sends them.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.harness import Double
from bench.reliability.children import Api, start_api
from bench.reliability.corpus import requests_by_task
from bench.reliability.rows import Row
from bench.reliability.stack import Stack, log_excerpt
from tests.api.documents import multipart_head, multipart_tail, padded_pdf, request_head

UPLOADS = 200
UPLOAD_MIB = (5, 20)
SLOW_CLIENTS = 50
SLOW_BODY_BYTES = 5 * 1024 * 1024
SLOW_SENT_BYTES = 64 * 1024
#: The API's default (connectors/api/settings.py: OCRFLUX_BODY_READ_TIMEOUT_S).
BODY_READ_TIMEOUT_S = 30.0
#: How late a 408 may come after the body stopped: the timeout plus the server's turn-around.
TIMEOUT_MARGIN_S = 5.0
ANSWER_TIMEOUT_S = 600.0
RETRY_ROUNDS = 20
HEALTH_INTERVAL_S = 0.05
HEALTH_GOAL_P99_S = 0.1
CHUNK = 256 * 1024
SEED = 3


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any
    seconds: float


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], Any]:
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if colon:
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    try:
        parsed: Any = json.loads(body) if body else None
    except json.JSONDecodeError:
        parsed = body[:200].decode(errors="replace")
    return int(status_line.split()[1]), headers, parsed


def _address(api: Api) -> tuple[str, int]:
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def upload(api: Api, path: Path) -> Answer | None:
    """POST one file to /convert/file, streamed from disk with its Content-Length; None when
    no answer came (the connection failed, or nothing within `ANSWER_TIMEOUT_S`)."""
    try:
        return await _upload(api, path)
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
        return None


async def _upload(api: Api, path: Path) -> Answer:
    started = time.monotonic()
    head, tail = multipart_head(path.name), multipart_tail()
    length = len(head) + path.stat().st_size + len(tail)
    reader, writer = await asyncio.open_connection(*_address(api))
    try:
        writer.write(request_head("/convert/file", length) + head)
        with path.open("rb") as file:
            while chunk := file.read(CHUNK):
                writer.write(chunk)
                await writer.drain()
        writer.write(tail)
        await writer.drain()
    except ConnectionError:
        pass  # refused before the whole body went: the answer is still there to read
    try:
        status, headers, body = await asyncio.wait_for(read_response(reader), ANSWER_TIMEOUT_S)
    finally:
        writer.close()
    return Answer(status, headers, body, time.monotonic() - started)


class HealthProbe:
    """Asks /health every `HEALTH_INTERVAL_S` on one kept-alive connection, in a thread of its
    own (so the load the client generates on its event loop does not delay the probe)."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health-probe", daemon=True)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        host, port = _address(self.api)
        connection = http.client.HTTPConnection(host, port, timeout=10)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                connection.request("GET", "/health")
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    self.failures += 1
                self.latencies.append(time.monotonic() - started)
            except (OSError, http.client.HTTPException):
                self.failures += 1
                connection.close()
                connection = http.client.HTTPConnection(host, port, timeout=10)
            self._stop.wait(HEALTH_INTERVAL_S)  # the probe's rate
        connection.close()

    def summary(self) -> str:
        if not self.latencies:
            return "/health never answered"
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return (
            f"/health p50 {statistics.median(ordered) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
            f"max {ordered[-1] * 1000:.0f} ms over {len(ordered)} probes"
            + (f", {self.failures} failed" if self.failures else "")
        )

    @property
    def p99_s(self) -> float:
        ordered = sorted(self.latencies) or [float("inf")]
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def make_uploads(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    return [
        padded_pdf(
            folder / f"upload-{n:03d}.pdf",
            rng.randint(UPLOAD_MIB[0] * 2**20, UPLOAD_MIB[1] * 2**20),
            f"concurrent upload {n}",
        )
        for n in range(UPLOADS)
    ]


def _api(stack: Stack, double: Double, name: str) -> Api:
    log_dir = stack.work / "logs" / name
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "VLLM_URL": double.url,
        "OCRFLUX_ENGINE": "vllm",
        "OCRFLUX_SPOOL_DIR": str(stack.work / "spool" / name),
    }
    api = start_api(name, log_dir, env)
    stack.sampler.track(name, api.proc.pid, children=True)
    return api


# --- 200 concurrent uploads --------------------------------------------------------------------


def uploads_row(stack: Stack) -> Row:
    began = time.monotonic()
    row = Row(
        group="API",
        case=f"{UPLOADS} concurrent uploads of {UPLOAD_MIB[0]}-{UPLOAD_MIB[1]} MB",
        driver="API /convert/file (direct mode)",
        expected="every request answered: 200, or 503 with Retry-After (none lost or hung); "
        "the refused sent again after Retry-After until all convert; API memory bounded",
    )
    paths = make_uploads(stack.work / "uploads")
    total_mib = sum(path.stat().st_size for path in paths) / 2**20
    double = stack.double("api-uploads", capacity=8)
    api = _api(stack, double, "api-uploads")
    try:
        first, final, rounds, health = asyncio.run(_uploads(api, paths))
        alive = api.proc.alive()
    finally:
        log = api.proc.log_text()
        api.stop()
        stats = double.control.stats()
        double.proc.stop()
    counts = _statuses(first)
    answered = [a for a in first if a is not None]
    unexplained = [a for a in answered if a.status not in (200, 503)] + [
        a for a in answered if a.status == 503 and "retry-after" not in a.headers
    ]
    row.submitted = len(paths)
    row.completed = sum(1 for a in final if a is not None and _success(a))
    row.failed = sum(1 for a in final if a is not None and a.status == 200 and not _success(a))
    row.lost = sum(1 for a in final if a is None)
    row.requests = requests_by_task(stats)
    row.answered = requests_by_task(stats, "200")
    row.needed = {"page": len(paths)}
    row.observed = (
        f"first answers: {counts}; all {len(paths)} converted after {rounds} retry round(s)"
        if row.completed == len(paths)
        else f"first answers: {counts}; {row.completed}/{len(paths)} converted"
    ) + f"; {total_mib / 1024:.1f} GiB sent; {health.summary()}"
    if unexplained:
        row.miss(f"{len(unexplained)} answers neither 200 nor 503 with Retry-After")
    if row.completed != len(paths):
        row.miss("not every document converted")
    if not alive:
        row.miss("the API died")
    row.peak_rss_mib = stack.sampler.take(["api-uploads", "api-uploads (child)"])
    row.duration_s = time.monotonic() - began
    if not row.holds:
        row.evidence = log_excerpt(log)
    return row


def _success(answer: Answer | None) -> bool:
    return (
        answer is not None
        and answer.status == 200
        and isinstance(answer.body, dict)
        and answer.body.get("status") == "success"
    )


def _statuses(answers: list[Answer | None]) -> str:
    found: dict[str, int] = {}
    for answer in answers:
        if answer is None:
            found["no answer"] = found.get("no answer", 0) + 1
            continue
        key = str(answer.status)
        if answer.status == 503:
            key += (
                " with Retry-After" if "retry-after" in answer.headers else " WITHOUT Retry-After"
            )
        found[key] = found.get(key, 0) + 1
    return ", ".join(f"{n} x {key}" for key, n in sorted(found.items()))


async def _uploads(
    api: Api, paths: list[Path]
) -> tuple[list[Answer | None], list[Answer | None], int, HealthProbe]:
    with HealthProbe(api) as probe:
        first = list(await asyncio.gather(*(upload(api, path) for path in paths)))
        final = list(first)
        rounds = 0
        while rounds < RETRY_ROUNDS:
            refused = {n: a for n, a in enumerate(final) if a is not None and a.status == 503}
            if not refused:
                break
            rounds += 1
            waiting = list(refused)
            delay = max(float(a.headers.get("retry-after", "1")) for a in refused.values())
            await asyncio.sleep(delay)  # what the server asked for
            again = await asyncio.gather(*(upload(api, paths[n]) for n in waiting))
            for n, answer in zip(waiting, again, strict=True):
                final[n] = answer
    return first, final, rounds, probe


# --- 50 slow clients ---------------------------------------------------------------------------


async def slow_client(api: Api) -> tuple[int | None, float]:
    """Headers and the first bytes of a body, then silence: (status, seconds until answered
    after the last byte), or (None, seconds) when nothing came."""
    head = multipart_head("slow.pdf")
    reader, writer = await asyncio.open_connection(*_address(api))
    try:
        writer.write(request_head("/convert/file", len(head) + SLOW_BODY_BYTES) + head)
        writer.write(b"%PDF-1.7\n" + bytes(SLOW_SENT_BYTES))
        await writer.drain()
        silent_since = time.monotonic()
        try:
            status, _, _ = await asyncio.wait_for(read_response(reader), BODY_READ_TIMEOUT_S + 60)
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            return None, time.monotonic() - silent_since
        return status, time.monotonic() - silent_since
    finally:
        writer.close()


async def _slow(
    api: Api, good: Path
) -> tuple[list[tuple[int | None, float]], Answer | None, HealthProbe]:
    with HealthProbe(api) as probe:
        slow = asyncio.gather(*(slow_client(api) for _ in range(SLOW_CLIENTS)))
        ordinary = await upload(api, good)  # while the slow ones hang
        answers = await slow
    return list(answers), ordinary, probe


def slow_clients_row(stack: Stack) -> Row:
    began = time.monotonic()
    row = Row(
        group="API",
        case=f"{SLOW_CLIENTS} slow clients (part of a 5 MB body, then silence)",
        driver="API /convert/file (direct mode)",
        expected=f"each answered 408 within the body-read timeout ({BODY_READ_TIMEOUT_S:.0f} s, "
        f"the default) + {TIMEOUT_MARGIN_S:.0f} s; /health p99 < "
        f"{HEALTH_GOAL_P99_S * 1000:.0f} ms meanwhile; an ordinary upload converts meanwhile",
    )
    good = padded_pdf(stack.work / "uploads" / "ordinary.pdf", 200_000, "ordinary upload")
    double = stack.double("api-slow", capacity=8)
    api = _api(stack, double, "api-slow")
    try:
        answers, ordinary, health = asyncio.run(_slow(api, good))
        alive = api.proc.alive()
    finally:
        log = api.proc.log_text()
        api.stop()
        stats = double.control.stats()
        double.proc.stop()
    row.requests = requests_by_task(stats)
    row.answered = requests_by_task(stats, "200")
    row.needed = {"page": 1}
    timed_out = [s for status, s in answers if status == 408]
    late = [s for s in timed_out if s > BODY_READ_TIMEOUT_S + TIMEOUT_MARGIN_S]
    others = sorted(str(status) for status, _ in answers if status != 408)
    row.submitted = SLOW_CLIENTS + 1
    row.failed = len(timed_out)
    row.completed = int(_success(ordinary))
    row.lost = sum(1 for status, _ in answers if status is None)
    row.observed = (
        f"{len(timed_out)} x 408 after {min(timed_out, default=0):.1f}-"
        f"{max(timed_out, default=0):.1f} s of silence"
        + (f"; other answers: {', '.join(others)}" if others else "")
        + (
            f"; ordinary upload: HTTP {ordinary.status} in {ordinary.seconds:.1f} s; "
            if ordinary is not None
            else "; ordinary upload: no answer; "
        )
        + health.summary()
    )
    if len(timed_out) != SLOW_CLIENTS or late:
        row.miss(f"{SLOW_CLIENTS - len(timed_out)} without 408, {len(late)} late")
    if not _success(ordinary):
        row.miss("the ordinary upload did not convert")
    if health.p99_s > HEALTH_GOAL_P99_S or health.failures:
        row.miss(f"/health p99 {health.p99_s * 1000:.0f} ms, {health.failures} failed")
    if not alive:
        row.miss("the API died")
    row.peak_rss_mib = stack.sampler.take(["api-slow", "api-slow (child)"])
    row.duration_s = time.monotonic() - began
    if not row.holds:
        row.evidence = log_excerpt(log)
    return row


def api_rows(stack: Stack) -> list[Row]:
    return [uploads_row(stack), slow_clients_row(stack)]
