"""`ocrflux.render_pool`: pages rendered in worker processes are the pages rendered in place,
in order; unrenderable pages keep their errors; a dead worker process is replaced; the PNGs
decode to MuPDF's own pixels."""

from __future__ import annotations

import asyncio
import io
import os
import select
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from PIL import Image

from ocrflux.convert import convert_document
from ocrflux.errors import DamagedPage, InputError
from ocrflux.mupdf import pymupdf
from ocrflux.pages import RenderedPage
from ocrflux.render import open_document, target_size
from ocrflux.render_pool import COLD_START_PAGES, PageRenderer, RenderPool
from ocrflux.settings import CoreSettings
from tests.fakes.fixtures import REPO_ROOT
from tests.ocrflux.docgen import make_image, make_pdf


@pytest.fixture(scope="module")
def pool() -> RenderPool:
    """Two started processes, shared by this module's tests (starting one takes a while)."""
    started = RenderPool(2, min_pages=1)  # every document through the processes
    asyncio.run(started.start())
    yield started  # type: ignore[misc]
    started.close()


async def render_in_order(renderer: PageRenderer, indices: Sequence[int]) -> list[object]:
    """Each page (or the InputError it raised), `renderer.ahead` renders at a time."""
    slots = asyncio.Semaphore(renderer.ahead)

    async def one(index: int) -> object:
        async with slots:
            try:
                return await renderer.render(index)
            except InputError as exc:
                return exc

    return list(await asyncio.gather(*(one(index) for index in indices)))


def in_place(data: bytes) -> list[RenderedPage]:
    with open_document(data) as document:
        return [document.render_page(index) for index in range(document.page_count)]


async def test_pool_pages_are_the_pages_rendered_in_place(pool: RenderPool) -> None:
    data = make_pdf([f"page {n}" for n in range(7)] + [None])
    with open_document(data) as document:
        renderer = await pool.open_renderer(document, data, pages=document.page_count)
        try:
            assert renderer.in_pool and renderer.ahead == 3
            pages = await render_in_order(renderer, range(document.page_count))
        finally:
            renderer.close()
    assert pages == in_place(data)
    assert [page.index for page in pages] == list(range(8))  # type: ignore[attr-defined]


async def test_a_damaged_page_keeps_its_error_through_the_pool(pool: RenderPool) -> None:
    whole = make_pdf([f"Chapter {n}" for n in range(6)])
    data = whole[: len(whole) // 2]  # repaired on opening; the lost pages come out blank
    with open_document(data) as document:
        renderer = await pool.open_renderer(document, data, pages=6)
        try:
            outcomes = await render_in_order(renderer, range(6))
        finally:
            renderer.close()
    damaged = [o for o in outcomes if isinstance(o, DamagedPage)]
    rendered = [o for o in outcomes if isinstance(o, RenderedPage)]
    assert damaged and rendered
    assert f"page {len(rendered) + 1} of 6 came out blank" in damaged[0].message


async def test_a_killed_render_process_is_replaced(pool: RenderPool) -> None:
    data = make_pdf(["one", "two", "three"])
    before = pool.pids()
    assert len(before) == 2
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    with open_document(data) as document:
        renderer = await pool.open_renderer(document, data, pages=3)
        try:
            pages = await render_in_order(renderer, range(3))
        finally:
            renderer.close()
    assert pages == in_place(data)
    assert pool.pids() and not set(pool.pids()) & set(before)


def test_render_processes_end_when_their_parent_is_killed(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids"
    script = (
        "import asyncio, os, signal\n"
        "from ocrflux.render_pool import RenderPool\n"
        "pool = RenderPool(2)\n"
        "asyncio.run(pool.start())\n"
        f"open({str(pids_file)!r}, 'w').write(' '.join(map(str, pool.pids())))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, timeout=60, check=False)
    assert done.returncode == -signal.SIGKILL
    pids = [int(pid) for pid in pids_file.read_text().split()]
    assert len(pids) == 2
    for pid in pids:
        try:
            handle = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # gone already
        try:
            waiter = select.poll()
            waiter.register(handle, select.POLLIN)  # readable once the process has ended
            assert waiter.poll(10_000), f"render process {pid} outlived its parent"
        finally:
            os.close(handle)


async def test_small_documents_and_images_render_in_place_started_pool_or_not() -> None:
    cold = RenderPool(2)
    small, large = make_pdf(["a", "b"]), make_pdf(["x"] * COLD_START_PAGES)
    image = make_image("PNG", size=(400, 300))
    try:
        for data, pages in ((small, 2), (image, 1)):
            with open_document(data) as document:
                renderer = await cold.open_renderer(document, data, pages=pages)
                assert not renderer.in_pool
                assert await render_in_order(renderer, range(pages)) == in_place(data)
        assert not cold.started
        with open_document(large) as document:
            renderer = await cold.open_renderer(document, large, pages=COLD_START_PAGES)
            try:
                assert renderer.in_pool
                first = await renderer.render(0)
            finally:
                renderer.close()
        assert cold.started and first == in_place(make_pdf(["x"]))[0]
        with open_document(small) as document:
            renderer = await cold.open_renderer(document, small, pages=2)
            assert not renderer.in_pool  # its first page comes sooner in place
    finally:
        cold.close()


async def test_the_spooled_copies_are_removed() -> None:
    data = make_pdf(["spooled"])
    own = RenderPool(1)
    try:
        with open_document(data) as document:
            renderer = await own.open_renderer(document, data, pages=COLD_START_PAGES)
            spooled = renderer.spooled
            assert spooled is not None and spooled.read_bytes() == data
            await renderer.render(0)
            renderer.close()
        assert not spooled.exists() and spooled.parent.is_dir()
    finally:
        own.close()
    assert not spooled.parent.exists()


@pytest.fixture
async def engine(ocrflux_server: object) -> AsyncIterator[object]:
    from ocrflux.engines.vllm import VllmEngine
    from ocrflux.vllm_client import VllmClient

    client = VllmClient([ocrflux_server.url], request_timeout_s=5)  # type: ignore[attr-defined]
    async with client:
        yield VllmEngine(client, model=client.model, max_tokens=8192, model_max_len=16384)


async def test_convert_with_the_pool_gives_the_same_result(
    ocrflux_server: object, engine: object, pool: RenderPool
) -> None:
    from tests.scenarios import REPORT_TEXT, register, twelve_page_report

    case = twelve_page_report()
    register(ocrflux_server, case)
    result = await convert_document(case.data, engine=engine, renders=pool)  # type: ignore[arg-type]
    assert result.status == "completed", result.error
    assert result.content == REPORT_TEXT
    assert ocrflux_server.stats()["by_task"]["page"] == {"200": 12}  # type: ignore[attr-defined]


def _with_a_red_dot(data: bytes, page: int, x: float, y: float) -> bytes:
    with pymupdf.open(stream=data, filetype="pdf") as doc:
        red = (1.0, 0.0, 0.0)
        doc[page].draw_rect(pymupdf.Rect(x, y, x + 2, y + 2), color=red, fill=red)
        return bytes(doc.tobytes())


def test_pdf_pngs_decode_to_mupdf_pixels_grey_where_every_pixel_is_grey() -> None:
    """Black-and-white pages go out as grey PNGs (a quarter of the bytes), colour pages as RGB;
    read back as RGB (as vLLM and the OCR engine read them) both are MuPDF's pixels exactly."""
    text = make_pdf(["Some text to draw", None, "A red corner", "A red dot"])
    marked = make_pdf(["A red corner"], marker=True)
    with pymupdf.open(stream=text, filetype="pdf") as doc, pymupdf.open(stream=marked) as red:
        doc.delete_page(2)
        doc.insert_pdf(red, start_at=2)
        data = doc.tobytes()
    # A dot about 100 px down: between the rows looked at first, so only the full check sees it.
    data = _with_a_red_dot(data, 3, 300, 82)
    with open_document(data) as document:
        pages = [document.render_page(index) for index in range(4)]
    modes = []
    with pymupdf.open(stream=data, filetype="pdf") as doc:
        for page, rendered in zip(doc, pages, strict=True):
            width, height = target_size(page.rect.width, page.rect.height)
            matrix = pymupdf.Matrix(width / page.rect.width, height / page.rect.height)
            pixmap = page.get_pixmap(matrix=matrix, colorspace=pymupdf.csRGB, alpha=False)
            decoded = Image.open(io.BytesIO(rendered.png))
            assert decoded.format == "PNG"
            modes.append(decoded.mode)
            assert decoded.convert("RGB").tobytes() == pixmap.samples
    assert modes == ["L", "L", "RGB", "RGB"]


def test_render_processes_default_to_the_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCRFLUX_RENDER_PROCESSES", raising=False)
    assert CoreSettings().render_processes == (os.cpu_count() or 1)
    monkeypatch.setenv("OCRFLUX_RENDER_PROCESSES", "0")
    assert CoreSettings().render_processes == 0
