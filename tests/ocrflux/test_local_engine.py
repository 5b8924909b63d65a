"""The `local` engine: text layer for born-digital pages, RapidOCR for the rest, cheap merges,
and `auto` engine selection."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pymupdf
import pytest

from bench.metrics import cer
from ocrflux.convert import convert_document
from ocrflux.engines import open_engine
from ocrflux.engines.local import LocalEngine, continuation_pairs, cpu_count, open_local_engine
from ocrflux.ocr import OcrLine
from ocrflux.pages import RenderedPage
from ocrflux.render import open_document
from ocrflux.settings import CoreSettings
from schemas.results import PageResult
from tests.ocrflux.docgen import (
    TextPage,
    make_image,
    make_scan,
    make_scanned_pdf,
    make_text_page,
    paragraph_text,
    table_rows,
)

TABLE_3 = "<table><tr><td>a</td><td>b</td><td>c</td></tr></table>"
TABLE_3B = "<table><tr><td>d</td><td>e</td><td>f</td></tr></table>"
TABLE_2 = "<table><tr><td>a</td><td>b</td></tr></table>"


def render_first(data: bytes) -> RenderedPage:
    with open_document(data) as document:
        return document.render_page(0)


class FakeReader:
    """Stands in for `OcrReader`: records the calling thread, answers fixed lines."""

    def __init__(self, lines: list[OcrLine] | None = None, error: Exception | None = None):
        self.lines = lines or []
        self.error = error
        self.threads: list[threading.Thread] = []

    def read(self, png: bytes) -> list[OcrLine]:
        self.threads.append(threading.current_thread())
        if self.error is not None:
            raise self.error
        return self.lines


def line(text: str, y: float) -> OcrLine:
    return OcrLine(((50, y), (500, y), (500, y + 20), (50, y + 20)), text, 0.99)


@pytest.fixture
async def fake_engine() -> AsyncIterator[tuple[LocalEngine, FakeReader]]:
    reader = FakeReader([line("Recognised by OCR.", 100)])
    with ThreadPoolExecutor(max_workers=2) as executor:
        yield LocalEngine(reader, executor, concurrency=2), reader  # type: ignore[arg-type]


# --- the cross-page rule -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "following", "pairs"),
    [
        (["Intro.", "The text runs on and"], ["continues here.", "Next."], [(1, 0)]),
        (["The text ends here."], ["A new paragraph."], []),
        (["Is this the end?"], ["Yes."], []),
        (["Quoted at the end.”"], ["Yes."], []),
        (["A list follows:"], ["first item"], []),
        (["# A heading without stop"], ["Body."], []),
        (["Body without stop"], ["# Heading"], []),
        (["Body without stop", "12"], ["- 13 -", "continues."], [(0, 1)]),
        (["Text", TABLE_3], [TABLE_3B, "After."], [(1, 0)]),
        (["Text", TABLE_3], [TABLE_2], []),
        (["Text without stop"], [TABLE_3], []),
        ([], ["x"], []),
        (["12"], ["x"], []),
    ],
)
def test_continuation_pairs(
    previous: list[str], following: list[str], pairs: list[tuple[int, int]]
) -> None:
    assert continuation_pairs(previous, following) == pairs


async def test_detect_merges_and_table_merge(
    fake_engine: tuple[LocalEngine, FakeReader],
) -> None:
    engine, _ = fake_engine
    outcome = await engine.detect_merges(["runs on and"], ["on."], max_attempts=1)
    assert outcome.ok and outcome.value == [(0, 0)]
    header = "<tr><td>k</td><td>v</td></tr>"
    merged = await engine.merge_tables(
        f"<table>{header}<tr><td>a</td><td>1</td></tr></table>",
        f"<table>{header}<tr><td>b</td><td>2</td></tr></table>",
        max_attempts=1,
    )
    assert merged.value == (
        f"<table>{header}<tr><td>a</td><td>1</td></tr><tr><td>b</td><td>2</td></tr></table>"
    )
    failed = await engine.merge_tables(TABLE_3, TABLE_2, max_attempts=1)
    assert failed.value is None and failed.error is not None


# --- page recognition with a fake OCR ------------------------------------------------------------


async def test_born_digital_pages_never_reach_the_ocr(
    fake_engine: tuple[LocalEngine, FakeReader],
) -> None:
    engine, reader = fake_engine
    rng = random.Random(8)
    page = make_text_page([paragraph_text(rng, 3) for _ in range(2)], heading="Results")
    result = await engine.recognize_page(render_first(page.pdf), max_attempts=1)
    assert result.source == "text_layer" and not result.fallback
    assert result.elements == page.elements
    assert reader.threads == []
    pdf_text = pymupdf.open(stream=page.pdf)[0].get_text()
    assert result.text.replace("# ", "").split() == pdf_text.split()


async def test_images_are_ocrd_off_the_event_loop(
    fake_engine: tuple[LocalEngine, FakeReader],
) -> None:
    engine, reader = fake_engine
    result = await engine.recognize_page(render_first(make_image()), max_attempts=1)
    assert result.source == "ocr" and result.elements == ["Recognised by OCR."]
    assert reader.threads and reader.threads[0] is not threading.main_thread()


async def test_an_ocr_layer_is_ocrd_again_unless_trusted() -> None:
    scan = make_image("PNG", size=(600, 800), marker=False)
    layer_text = paragraph_text(random.Random(9), 12)
    page = render_first(make_scanned_pdf(scan, invisible_text=layer_text))
    reader = FakeReader([line("Our own OCR.", 100)])
    with ThreadPoolExecutor(max_workers=1) as executor:
        preferring_ocr = LocalEngine(reader, executor, concurrency=1)  # type: ignore[arg-type]
        trusting = LocalEngine(reader, executor, concurrency=1, ocr_layer="use")  # type: ignore[arg-type]
        ocr = await preferring_ocr.recognize_page(page, max_attempts=1)
        assert (ocr.source, ocr.elements) == ("ocr", ["Our own OCR."])
        layer = await trusting.recognize_page(page, max_attempts=1)
        assert layer.source == "text_layer" and layer.text.split() == layer_text.split()
        reader.lines = []  # our OCR finds nothing: the old layer is better than no text
        empty = await preferring_ocr.recognize_page(page, max_attempts=1)
        assert empty.source == "text_layer" and empty.text.split() == layer_text.split()


async def test_an_ocr_failure_is_a_fallback_page_not_an_exception() -> None:
    reader = FakeReader(error=RuntimeError("onnxruntime exploded"))
    with ThreadPoolExecutor(max_workers=1) as executor:
        engine = LocalEngine(reader, executor, concurrency=1)  # type: ignore[arg-type]
        result = await engine.recognize_page(render_first(make_image()), max_attempts=1)
    assert result.fallback and result.source == "none" and result.elements == []
    assert result.error is not None and "onnxruntime exploded" in result.error.message


async def test_ocr_concurrency_is_bounded_by_the_workers() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()
    two_running = threading.Event()
    release = threading.Event()

    class Blocking(FakeReader):
        def read(self, png: bytes) -> list[OcrLine]:
            nonlocal running, peak
            with lock:
                running += 1
                peak = max(peak, running)
                if running == 2:
                    two_running.set()
            release.wait(timeout=10)
            with lock:
                running -= 1
            return []

    with ThreadPoolExecutor(max_workers=4) as executor:
        engine = LocalEngine(Blocking(), executor, concurrency=2)  # type: ignore[arg-type]
        page = render_first(make_image())
        tasks = [asyncio.create_task(engine.recognize_page(page, max_attempts=1)) for _ in range(5)]
        assert await asyncio.to_thread(two_running.wait, 10)
        release.set()
        results = await asyncio.gather(*tasks)
    assert peak == 2  # the executor had room for 4: the engine's own bound held
    assert all(r.source == "ocr" for r in results)


# --- real OCR (RapidOCR, bundled models, no network) --------------------------------------------

#: A small fixed subset of benchmark corpus (a): (seed, columns, font, size, angle).
OCR_SUBSET = [(1, 1, "tiro", 10, 0.6), (2, 2, "helv", 9, -0.8)]


def _subset_page(seed: int, columns: int, font: str, size: float) -> TextPage:
    rng = random.Random(seed)
    count = 3 if columns == 1 else 9
    return make_text_page(
        [paragraph_text(rng, 4) for _ in range(count)],
        heading="Quarterly network report",
        columns=columns,
        font=font,
        size=size,
    )


@contextmanager
def offline() -> Iterator[None]:
    """No model download and no network connection may happen inside."""
    import rapidocr.utils.download_file as download

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network or model download attempted")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(download.DownloadFile, "run", refuse)
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        yield


@pytest.fixture(scope="module")
def ocr_results() -> list[tuple[TextPage, PageResult]]:
    async def run() -> list[tuple[TextPage, PageResult]]:
        pages = [
            _subset_page(seed, columns, font, size) for seed, columns, font, size, _ in OCR_SUBSET
        ]
        scans = [
            render_first(make_scan(page.pdf, dpi=150, angle=spec[4], noise=10, seed=spec[0]))
            for page, spec in zip(pages, OCR_SUBSET, strict=True)
        ]
        async with open_local_engine(CoreSettings()) as engine:
            results = await asyncio.gather(
                *(engine.recognize_page(scan, max_attempts=1) for scan in scans)
            )
        return list(zip(pages, results, strict=True))

    with offline():
        return asyncio.run(run())


def test_scans_are_read_by_ocr_within_5_percent_cer(
    ocr_results: list[tuple[TextPage, PageResult]],
) -> None:
    for page, result in ocr_results:
        assert result.source == "ocr" and not result.fallback
        assert cer(result.text, page.truth) <= 0.05, result.text[:200]


def test_ocr_finds_headings_and_reads_columns_in_order(
    ocr_results: list[tuple[TextPage, PageResult]],
) -> None:
    for page, result in ocr_results:
        assert result.elements[0] == "# Quarterly network report"
        # Every paragraph's opening words appear in order (columns not interleaved).
        text = result.text
        positions = [text.find(" ".join(e.split()[:4])) for e in page.elements[1:]]
        assert -1 not in positions and positions == sorted(positions)


def test_engine_workers_follow_the_cpu_count() -> None:
    async def workers() -> int:
        async with open_local_engine(CoreSettings()) as engine:
            return engine._executor._max_workers  # type: ignore[attr-defined]

    assert asyncio.run(workers()) == cpu_count()


# --- the whole document with the local engine ----------------------------------------------------


def three_page_pdf() -> tuple[bytes, str]:
    rng = random.Random(12)
    first = paragraph_text(rng, 2)
    pages = [
        make_text_page([first, "This sentence starts on the first page and"], heading="Report"),
        make_text_page(["ends on the second one.", paragraph_text(rng, 2)]),
        make_text_page([paragraph_text(rng, 2)], table=table_rows(rng, 3, 3)),
    ]
    out = pymupdf.open()
    for page in pages:
        out.insert_pdf(pymupdf.open(stream=page.pdf, filetype="pdf"))
    return out.tobytes(), first


async def test_convert_document_with_the_local_engine() -> None:
    data, first = three_page_pdf()
    async with open_local_engine(CoreSettings()) as engine:
        result = await convert_document(data, engine=engine)
    assert result.status == "completed" and result.engine == "local"
    assert result.num_pages == 3 and result.fallback_pages == []
    assert set(result.page_sources.values()) == {"text_layer"}
    elements = result.document_text.split("\n\n")
    assert elements[0] == "# Report" and elements[1] == first
    assert "This sentence starts on the first page and ends on the second one." in elements
    assert elements[-1].startswith("<table>") and elements[-1].endswith("</table>")
    assert result.page_texts["1"].startswith("ends on the second one.")


def test_cli_convert_with_the_local_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ocrflux.cli import main

    monkeypatch.delenv("VLLM_URL", raising=False)
    data, first = three_page_pdf()
    source = tmp_path / "report.pdf"
    source.write_bytes(data)
    assert main(["convert", str(source), "--engine", "local", "--format", "text"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Report\n") and first in out
    assert "This sentence starts on the first page and ends on the second one." in out


# --- engine selection --------------------------------------------------------------------------


async def test_auto_chooses_local_when_vllm_url_is_unset(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VLLM_URL", raising=False)
    caplog.set_level(logging.INFO, logger="ocrflux.engines.factory")
    async with open_engine(CoreSettings(), "auto") as engine:
        assert engine.name == "local"
    assert "using the local engine: VLLM_URL is not set" in caplog.text


async def test_auto_chooses_local_when_vllm_does_not_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = CoreSettings(vllm_url=f"http://127.0.0.1:{port}", ocrflux_engine="auto")
    caplog.set_level(logging.INFO, logger="ocrflux.engines.factory")
    async with open_engine(settings) as engine:
        assert engine.name == "local"
    assert "using the local engine: VLLM_URL is set but" in caplog.text
    assert str(port) in caplog.text and "did not answer /health" in caplog.text


def test_a_strip_of_an_image_is_read_in_bounded_memory() -> None:
    """A 60000 x 10 image renders to a 1024 x 1 page; RapidOCR alone would scale its short side
    to 736 px (a 5 GiB array). Padded, it reads nothing in well under 3 GiB of address space,
    and text on a thin strip is still read."""
    script = (
        "import io, resource\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 * 1024**3, 3 * 1024**3))\n"
        "from PIL import Image, ImageDraw, ImageFont\n"
        "from ocrflux.ocr import OcrReader\n"
        "def png(image):\n"
        "    out = io.BytesIO(); image.save(out, 'PNG'); return out.getvalue()\n"
        "reader = OcrReader()\n"
        "assert reader.read(png(Image.new('RGB', (1024, 1), 'white'))) == []\n"
        "assert reader.read(png(Image.new('RGB', (1, 1024), 'white'))) == []\n"
        "strip = Image.new('RGB', (1024, 40), 'white')\n"
        "ImageDraw.Draw(strip).text((10, 5), 'A thin strip of text', fill='black',\n"
        "                           font=ImageFont.load_default(size=24))\n"
        "print([line.text for line in reader.read(png(strip))])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "['A thin strip of text']"
