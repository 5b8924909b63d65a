"""HTTP API under load: 50 concurrent uploads against one direct-mode instance.

    python -m bench.bench_api [--uploads 50] [--pages 4] [--no-write]

Starts the OCRFlux-3B test double and `python -m ocrflux.document_api_server_remote` as child
processes (both ended by PID), sends every upload at once to `/convert/file`, and records wall
time, latency and the server's peak resident memory (VmHWM, from /proc) before and after. The
result goes to the "HTTP API: 50 concurrent uploads" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp

from bench.report import write_section

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
TITLE = "HTTP API: 50 concurrent uploads"
SECTION = f"## {TITLE}"


@dataclass
class LoadResult:
    answers: list[dict[str, Any]]
    statuses: list[int]
    latencies_s: list[float]
    wall_s: float


def documents(count: int, pages: int) -> list[bytes]:
    """`count` distinct born-digital PDFs of `pages` pages each."""
    from tests.scenarios import pdf_with_lines

    return [
        pdf_with_lines([[f"load document {n} page {p}", "x" * (n + p)] for p in range(pages)])
        for n in range(count)
    ]


async def upload_all(base_url: str, docs: list[bytes], timeout_s: float = 600) -> LoadResult:
    """POST every document to `/convert/file` at the same time."""
    latencies: list[float] = []

    async def one(session: aiohttp.ClientSession, n: int, data: bytes) -> tuple[int, Any]:
        form = aiohttp.FormData()
        form.add_field("file", data, filename=f"load-{n}.pdf")
        form.add_field("output_format", "markdown")
        started = time.monotonic()
        async with session.post(f"{base_url}/convert/file", data=form) as response:
            body = await response.json()
        latencies.append(time.monotonic() - started)
        return response.status, body

    connector = aiohttp.TCPConnector(limit=len(docs))
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.monotonic()
        done = await asyncio.gather(*(one(session, n, d) for n, d in enumerate(docs)))
        wall = time.monotonic() - started
    return LoadResult([b for _, b in done], [s for s, _ in done], latencies, wall)


def peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc status")


def _free_port() -> int:
    from deploy.kafka_broker import free_port

    return free_port()


def _start_api(vllm_url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, "API_HOST": "127.0.0.1", "API_PORT": str(port), "VLLM_URL": vllm_url}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "ocrflux.document_api_server_remote"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the API exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=5):
                return process, url
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("the API did not start") from None
            time.sleep(0.1)  # poll interval while the API starts


def run(uploads: int, pages: int, log: Path) -> dict[str, Any]:
    from tests.fakes.fixtures import start_ocrflux_subprocess

    double = start_ocrflux_subprocess(capacity=16)
    try:
        api, url = _start_api(double.url, log)
        try:
            docs = documents(uploads + 1, pages)
            asyncio.run(upload_all(url, docs[:1]))  # warm-up: imports, first render
            idle = peak_rss_kib(api.pid)
            result = asyncio.run(upload_all(url, docs[1:]))
            peak = peak_rss_kib(api.pid)
        finally:
            api.terminate()
            api.wait(15)
    finally:
        double.stop()
    ok = sum(
        1
        for s, a in zip(result.statuses, result.answers, strict=True)
        if s == 200 and a["status"] == "success"
    )
    ordered = sorted(result.latencies_s)
    return {
        "uploads": uploads,
        "pages": pages,
        "ok": ok,
        "wall_s": result.wall_s,
        "p50_s": statistics.median(ordered),
        "p95_s": ordered[int(0.95 * (len(ordered) - 1))],
        "idle_mib": idle / 1024,
        "peak_mib": peak / 1024,
        "upload_kib": sum(len(d) for d in docs[1:]) / uploads / 1024,
    }


def section(figures: dict[str, Any]) -> str:
    f = figures
    return (
        f"{SECTION}\n\n"
        f"`python -m bench.bench_api` ({date.today().isoformat()}; {os.cpu_count()} CPUs): one "
        "direct-mode instance (`python -m ocrflux.document_api_server_remote`, default limits: "
        "4 conversions at once, 100 waiting) against the OCRFlux-3B test double (16 slots, no "
        f"service time), {f['uploads']} `/convert/file` uploads sent at once, each a distinct "
        f"{f['pages']}-page PDF of {f['upload_kib']:.1f} KiB.\n\n"
        "| uploads | succeeded | wall s | p50 s | p95 s | server RSS after warm-up MiB "
        "| server peak RSS MiB |\n"
        "| --- | --- | --- | --- | --- | --- | --- |\n"
        f"| {f['uploads']} | {f['ok']} | {f['wall_s']:.2f} | {f['p50_s']:.2f} | "
        f"{f['p95_s']:.2f} | {f['idle_mib']:.0f} | {f['peak_mib']:.0f} |\n\n"
        "Notes:\n"
        "- Peak RSS is the kernel's high-water mark (VmHWM) of the server process. What bounds "
        "it: uploads are streamed and refused past `MAX_FILE_BYTES`; at most "
        "`OCRFLUX_MAX_CONVERSIONS` documents are converted at once, each rendering one page at "
        "a time with at most `PAGE_CONCURRENCY` pages in flight; at most "
        "`OCRFLUX_MAX_QUEUED` more wait (their bytes in memory), beyond which "
        "submissions get 503 with Retry-After.\n"
        "- The uploads are small, so this measures the server's own overhead per request "
        "(parsing, job bookkeeping, rendering), not document size: larger documents add "
        "about their size per waiting upload.\n"
        "- `tests/api/test_load.py` runs the same load in the test suite and asserts every "
        "upload succeeds and the peak stays under a generous bound.\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--pages", type=int, default=4)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument("--log", type=Path, default=Path("/tmp/bench-api.log"))
    args = parser.parse_args(argv)
    figures = run(args.uploads, args.pages, args.log)
    text = section(figures)
    print(text)
    if not args.no_write:
        write_section(TITLE, text.removeprefix(SECTION))
    return 0 if figures["ok"] == figures["uploads"] else 1


if __name__ == "__main__":
    sys.exit(main())
