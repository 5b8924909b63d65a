"""Quality and speed of the `local` engine: `python -m bench.bench_local` (`make bench-local`).

Two corpora, each page OCR'd through the real path (image bytes -> `open_document` -> the
1024 px page -> `LocalEngine.recognize_page`):
(a) pages generated in code (tests/ocrflux/docgen.py): base-14 and installed Debian TrueType
    fonts, 9-14 pt, one and two columns, ruled tables; rendered at 150 DPI, rotated by less
    than one degree, with Gaussian noise. Ground truth: the generated text.
(b) real PDF pages from Debian's `debian-reference-en` package (installed with apt-get when
    missing; skipped when that is impossible). Ground truth: the page's own text layer, read
    by `ocrflux.textlayer`; the page rendered at 150 DPI is what the OCR sees.
CER = Levenshtein distance / reference length after `bench.metrics.normalise`, summed over a
corpus (total edits / total reference characters). Seconds per page = wall time of the corpus
divided by its pages, with the engine's default worker count (one per CPU), and the mean
latency of one page. Also measured: CPU milliseconds per page of the text-layer reading, with
and without the table finder, over every page of the Debian PDF.

The results are printed and written to the "Local engine quality" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pymupdf

from bench.metrics import levenshtein, normalise
from bench.report import BENCHMARKS, write_section
from ocrflux.engines.local import cpu_count, open_local_engine
from ocrflux.ocr import MODEL_ID
from ocrflux.pages import RenderedPage, TableMode
from ocrflux.render import open_document
from ocrflux.settings import CoreSettings
from ocrflux.textlayer import read_text_layer
from tests.ocrflux.docgen import (
    available_fonts,
    make_scan,
    make_text_page,
    paragraph_text,
    table_rows,
)

DEBIAN_PACKAGE = "debian-reference-en"
DEBIAN_PDF = Path("/usr/share/debian-reference/debian-reference.en.pdf")
FONT_PACKAGES = ("fonts-dejavu-core", "fonts-liberation")
TITLE = "Local engine quality"
SECTION = f"## {TITLE}"
GOAL_A, GOAL_B = 0.03, 0.05
SIZES = (9, 10, 11, 12, 14)
DPI = 150


@dataclass
class Sample:
    name: str
    image: bytes
    truth: str


@dataclass
class Score:
    pages: int
    edits: int
    chars: int
    wall_s: float
    latencies: list[float]
    worst: list[tuple[float, str]]

    @property
    def cer(self) -> float:
        return self.edits / max(1, self.chars)

    @property
    def s_per_page(self) -> float:
        return self.wall_s / max(1, self.pages)


def generated_corpus(count: int, seed: int = 2024) -> list[Sample]:
    """Corpus (a): varied fonts, sizes and layouts, scanned at 150 DPI with noise and skew."""
    rng = random.Random(seed)
    fonts = available_fonts()
    samples = []
    for index in range(count):
        font = fonts[index % len(fonts)]
        size = SIZES[(index // len(fonts)) % len(SIZES)]
        layout = ("one column", "two columns", "table")[index % 3]
        paragraphs = (3 if size >= 12 else 4) if layout != "two columns" else 12 - size // 2
        kwargs: dict[str, object] = {}
        if layout == "two columns":
            kwargs["columns"] = 2
        if layout == "table":
            kwargs["table"] = table_rows(rng, rng.randint(3, 6), rng.randint(2, 5))
        page = make_text_page(
            [paragraph_text(rng, rng.randint(2, 4)) for _ in range(paragraphs)],
            heading=paragraph_text(rng, 1).split(".")[0][:40].rstrip(" ,"),
            font=font,
            size=size,
            **kwargs,  # type: ignore[arg-type]
        )
        angle = rng.uniform(-0.9, 0.9)
        image = make_scan(page.pdf, dpi=DPI, angle=angle, noise=rng.uniform(6, 12), seed=index)
        name = f"{font} {size}pt {layout} {angle:+.2f}deg"
        samples.append(Sample(name, image, page.truth))
    return samples


def ensure_packages(packages: tuple[str, ...], probe: Path) -> bool:
    """Install Debian packages with apt-get when `probe` is missing; False if impossible."""
    if probe.exists():
        return True
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return False
    print(f"installing {' '.join(packages)} with apt-get ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *packages]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=False)
        subprocess.run(install, env=env, capture_output=True, check=False)
    return probe.exists()


def debian_corpus(count: int) -> list[Sample]:
    """Corpus (b): evenly spread body pages of the Debian Reference with a usable text layer."""
    doc = pymupdf.open(DEBIAN_PDF)
    try:
        first = min(30, doc.page_count // 5)  # skip the cover and the tables of contents
        step = max(1, (doc.page_count - first) // count)
        samples = []
        for number in range(first, doc.page_count, step):
            page = doc[number]
            reading = read_text_layer(page)
            if reading.text is None or reading.chars < 400:
                continue
            pixmap = page.get_pixmap(dpi=DPI, colorspace=pymupdf.csGRAY)
            samples.append(Sample(f"page {number + 1}", pixmap.tobytes("png"), reading.text))
            if len(samples) == count:
                break
        return samples
    finally:
        doc.close()


def render(image: bytes) -> RenderedPage:
    with open_document(image) as document:
        return document.render_page(0)


async def score(samples: list[Sample]) -> Score:
    async with open_local_engine(CoreSettings()) as engine:
        # Warm up: each worker thread loads its ONNX sessions on first use.
        warm = [render(samples[0].image)] * cpu_count()
        await asyncio.gather(*(engine.recognize_page(p, max_attempts=1) for p in warm))
        pages = [render(sample.image) for sample in samples]
        started = time.monotonic()
        results = await asyncio.gather(
            *(engine.recognize_page(page, max_attempts=1) for page in pages)
        )
        wall = time.monotonic() - started
    edits = chars = 0
    per_page = []
    for sample, result in zip(samples, results, strict=True):
        if result.source != "ocr":
            raise RuntimeError(f"{sample.name}: expected OCR, got {result.source}")
        ref, hyp = normalise(sample.truth), normalise(result.text)
        distance = levenshtein(hyp, ref)
        edits += distance
        chars += len(ref)
        per_page.append((distance / max(1, len(ref)), sample.name))
    worst = sorted(per_page, reverse=True)[:3]
    return Score(len(samples), edits, chars, wall, [r.latency_s for r in results], worst)


def text_layer_cost(path: Path) -> dict[TableMode, tuple[float, float, float, int]]:
    """CPU ms per page of `read_text_layer` per table mode: (mean, median, p95, tables)."""
    doc = pymupdf.open(path)
    out: dict[TableMode, tuple[float, float, float, int]] = {}
    try:
        for mode in ("never", "ruled", "always"):
            times, tables = [], 0
            for number in range(doc.page_count):
                page = doc[number]
                began = time.process_time()
                tables += read_text_layer(page, tables=mode).tables
                times.append((time.process_time() - began) * 1000)
            times.sort()
            p95 = times[int(0.95 * (len(times) - 1))]
            out[mode] = (statistics.mean(times), statistics.median(times), p95, tables)
    finally:
        doc.close()
    return out


def generated_text_layer_cost(count: int) -> float:
    """CPU ms per page of the text layer of corpus (a)'s born-digital pages (default mode)."""
    rng = random.Random(7)
    pdfs = [
        make_text_page([paragraph_text(rng, 4) for _ in range(4)], columns=1 + i % 2).pdf
        for i in range(count)
    ]
    began = time.process_time()
    for pdf in pdfs:
        with pymupdf.open(stream=pdf, filetype="pdf") as doc:
            read_text_layer(doc[0])
    return (time.process_time() - began) * 1000 / count


def report(
    a: Score,
    b: Score | None,
    b_note: str,
    costs: dict[TableMode, tuple[float, float, float, int]] | None,
    generated_ms: float,
) -> str:
    def row(label: str, s: Score, goal: float) -> str:
        verdict = "met" if s.cer <= goal else "**missed**"
        return (
            f"| {label} | {s.pages} | {s.chars:,} | {s.cer:.2%} | <= {goal:.0%} ({verdict}) "
            f"| {s.s_per_page:.2f} | {statistics.mean(s.latencies):.2f} |"
        )

    lines = [
        SECTION,
        "",
        f"`make bench-local` ({time.strftime('%Y-%m-%d')}; {cpu_count()} CPUs, "
        f"one OCR worker per CPU; OCR model {MODEL_ID}, angle classifier off). CER is total "
        "edits / total reference characters after normalisation (NFKC, whitespace runs, "
        "Markdown/HTML markup and typographic quotes ignored); s/page is the corpus wall "
        "time / pages, latency the mean time one page spends in OCR.",
        "",
        "| corpus | pages | ref chars | CER | goal | s/page | latency s |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        row("(a) generated, 150 DPI scans, noise, skew < 1 deg", a, GOAL_A),
    ]
    if b is not None:
        lines.append(row(f"(b) {DEBIAN_PACKAGE} PDF pages rendered at 150 DPI", b, GOAL_B))
    else:
        lines.append(f"| (b) {DEBIAN_PACKAGE} | skipped: {b_note} | | | | | |")
    lines += ["", "Worst pages:"]
    for label, s in (("(a)", a), ("(b)", b)):
        if s is not None:
            lines.append(f"- {label} " + "; ".join(f"{name}: {c:.2%}" for c, name in s.worst))
    lines += [
        "",
        "Text layer (born-digital pages, no OCR): CPU ms per page of `read_text_layer`.",
        "",
        f"- generated pages (one and two columns, no tables): {generated_ms:.1f} ms",
    ]
    if costs is not None:
        lines += [
            f"- {DEBIAN_PDF.name}, every page (table-heavy: most pages hold a ruled table):",
            "",
            "| table finder | mean ms | median ms | p95 ms | tables found |",
            "| --- | --- | --- | --- | --- |",
        ]
        for mode, (mean, med, p95, tables) in costs.items():
            lines.append(f"| `{mode}` | {mean:.1f} | {med:.1f} | {p95:.1f} | {tables} |")
    lines += [
        "",
        "Notes:",
        "- The stream pipeline budgets about 30 CPU-ms of overhead per page. The text layer "
        "without tables stays far below it; `ruled` (the default of `extract_text_layer`) runs "
        "PyMuPDF's table finder only where ruling lines could form a table, clipped to them, so "
        "the budget holds for pages without ruled tables and is exceeded on pages with large "
        "ones (the p95 above). PyMuPDF's default `find_tables()` (its ONNX layout model) costs "
        "about 200 ms a page and is never used.",
        "- Corpus (a) is built from a small English vocabulary, so it measures fonts, sizes, "
        "layout, skew and noise rather than language breadth; ground truth is exact.",
        "- Corpus (b)'s ground truth is the PDF's own text layer as `ocrflux.textlayer` reads it "
        "(reading order, tables row by row). Most remaining errors are spaces the recogniser "
        "inserts in monospaced code, arrows and symbols, and running heads such as '7 / 233'.",
        "- OCR sees the 1024 px page image the pipeline renders (protocol section 2), not the "
        "150 DPI original: about 88 DPI for A4.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--generated", type=int, default=30, help="pages of corpus (a)")
    parser.add_argument("--debian", type=int, default=16, help="pages of corpus (b)")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)

    ensure_packages(FONT_PACKAGES, Path("/usr/share/fonts/truetype/liberation"))
    print(f"fonts: {', '.join(available_fonts())}", file=sys.stderr)
    a = asyncio.run(score(generated_corpus(args.generated)))
    b: Score | None = None
    note = ""
    costs = None
    if ensure_packages((DEBIAN_PACKAGE,), DEBIAN_PDF):
        b = asyncio.run(score(debian_corpus(args.debian)))
        costs = text_layer_cost(DEBIAN_PDF)
    else:
        note = f"{DEBIAN_PDF} missing and apt-get unavailable (needs root)"
    text = report(a, b, note, costs, generated_text_layer_cost(20))
    print(text)
    if not args.no_write:
        write_section(TITLE, text.removeprefix(SECTION))
        print(f"written to {BENCHMARKS}", file=sys.stderr)
    missed = a.cer > GOAL_A or (b is not None and b.cer > GOAL_B)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
