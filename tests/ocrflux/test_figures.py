"""Figures: boxes parsed where they stood, bad boxes ignored with a warning, crops at the right
place of a page rendered larger than the model saw it, and the direct driver end to end."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator

import pytest
from PIL import Image, ImageDraw

from ocrflux.convert import convert_document
from ocrflux.engines.vllm import VllmEngine
from ocrflux.figures import (
    FIGURE_IGNORED,
    crop_box,
    figure_markdown,
    figure_name,
    figures_folder,
    link_figures,
    page_figures,
)
from ocrflux.page_parse import page_elements
from ocrflux.result_formats import render_output
from ocrflux.vllm_client import VllmClient
from schemas.options import ConversionOptions
from schemas.results import DocumentResult, Figure, FigureBox
from tests.scenarios import (
    FIGURE_NAME,
    FIGURE_PAGES,
    FIGURE_TEXT,
    FIGURE_TEXT_WITHOUT,
    assert_is_the_drawn_figure,
    figure_document,
    register,
)

ANSWER = (
    "# Title\n\nIntro paragraph.\n\n<Image>(100,200),(300,350)</Image>\n\nCaption.\n\n"
    "<Image>( 10 , 20 ) , ( 30 , 40 )</Image>"
)


def _box(left: float, top: float, right: float, bottom: float) -> FigureBox:
    return FigureBox(left=left / 724, top=top / 1024, right=right / 724, bottom=bottom / 1024)


def test_figures_keep_their_position_among_the_elements() -> None:
    figures, warnings = page_figures(ANSWER, page=4, width=724, height=1024)
    assert warnings == []
    assert [(f.position, f.box) for f in figures] == [
        (2, _box(100, 200, 300, 350)),
        (3, _box(10, 20, 30, 40)),
    ]
    # The element list the merge prompt numbers is the same with or without figures kept.
    assert page_elements(ANSWER) == ["# Title", "Intro paragraph.", "Caption."]


def test_bad_boxes_are_ignored_with_a_warning_each() -> None:
    answer = "\n\n".join(
        [
            "Text.",
            "<Image>(300,200),(100,350)</Image>",  # inverted
            "<Image>(100,200),(100,350)</Image>",  # zero width
            "<Image>(100,200),(800,350)</Image>",  # past the right edge
            "<Image>(-50,200),(100,350)</Image>",  # left of the page
            "<Image>(a,b),(c,d)</Image>",  # unreadable
            "<Image>(1,2),(724,1025)</Image>",  # one pixel over: rounding, kept
        ]
    )
    figures, warnings = page_figures(answer, page=0, width=724, height=1024)
    assert [f.box for f in figures] == [FigureBox(left=1 / 724, top=2 / 1024, right=1, bottom=1)]
    assert [w.code for w in warnings] == [FIGURE_IGNORED] * 5
    assert all(w.message.startswith("page 1: figure box") for w in warnings)
    assert "inverted" in warnings[0].message and "not inside" in warnings[2].message


def test_no_answer_has_no_figures() -> None:
    assert page_figures(None, page=0, width=10, height=10) == ([], [])


def _page_with_figure(scale: int) -> Image.Image:
    """A white 724 x 1024 page (times `scale`) with a red box at (100,200)-(300,350) and a blue
    square in its top-left corner."""
    image = Image.new("RGB", (724 * scale, 1024 * scale), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((100 * scale, 200 * scale, 300 * scale - 1, 350 * scale - 1), fill="red")
    draw.rectangle((100 * scale, 200 * scale, 110 * scale - 1, 210 * scale - 1), fill="blue")
    return image


def test_the_crop_is_the_drawn_figure_at_the_larger_scale() -> None:
    crop = crop_box(_page_with_figure(2), _box(100, 200, 300, 350))
    assert (crop.width, crop.height) == (400, 300)
    with Image.open(io.BytesIO(crop.png)) as image:
        assert image.format == "PNG"
        rgb = image.convert("RGB")
        assert rgb.getpixel((0, 0)) == (0, 0, 255)  # the blue corner marks the box's origin
        assert rgb.getpixel((19, 19)) == (0, 0, 255)
        assert rgb.getpixel((20, 20)) == (255, 0, 0)
        assert rgb.getpixel((399, 299)) == (255, 0, 0)
        colours = {colour for _, colour in rgb.getcolors(maxcolors=16) or []}
        assert colours == {(255, 0, 0), (0, 0, 255)}  # nothing of the white page around it


def test_a_fractional_box_is_widened_to_whole_pixels_and_kept_on_the_page() -> None:
    crop = crop_box(_page_with_figure(1), _box(99.5, 199.5, 723.6, 1024))
    assert (crop.width, crop.height) == (724 - 99, 1024 - 199)


def test_names_and_markdown() -> None:
    figure = Figure(number=3, page=6, name=figure_name(3, 6), box=_box(1, 1, 2, 2))
    assert figure.name == "figure-003-page-7.png"
    assert figure_markdown(figure) == "![Figure 3, page 7](<figure-003-page-7.png>)"
    assert figure_markdown(figure, "out_figures/figure-003-page-7.png") == (
        "![Figure 3, page 7](<out_figures/figure-003-page-7.png>)"
    )
    assert figures_folder("out") == "out_figures"


# ---- the direct driver -----------------------------------------------------------------------


@pytest.fixture
async def engine(ocrflux_server: object) -> AsyncIterator[VllmEngine]:
    client = VllmClient([ocrflux_server.url], request_timeout_s=5)  # type: ignore[attr-defined]
    async with client:
        yield VllmEngine(client, model=client.model, max_tokens=8192, model_max_len=16384)


async def test_convert_crops_the_drawn_figure_and_links_it_where_it_stood(
    ocrflux_server: object, engine: VllmEngine
) -> None:
    case = figure_document()
    register(ocrflux_server, case)
    result = await convert_document(
        case.data, engine=engine, options=ConversionOptions(figures="crop")
    )
    assert result.status == "completed", result.error
    assert result.document_text == FIGURE_TEXT.format(link=FIGURE_NAME)
    assert [(f.number, f.page, f.name) for f in result.figures] == [(1, 1, FIGURE_NAME)]
    figure = result.figures[0]
    assert figure.data is not None and figure.ref is None
    assert_is_the_drawn_figure(base64.b64decode(figure.data))
    # The figure's block is where its link is; the paragraph merged over pages 1-2 is one block.
    block = next(b for b in result.blocks if b.figure == 1)
    assert result.document_text[block.start : block.end] == f"![Figure 1, page 2](<{FIGURE_NAME}>)"
    assert block.pages == [1]
    stats = ocrflux_server.stats()  # type: ignore[attr-defined]
    assert stats["by_task"] == {"page": {"200": 3}, "detect": {"200": 2}}  # crops ask nothing


async def test_the_figure_scale_is_configurable(ocrflux_server: object, engine: VllmEngine) -> None:
    case = figure_document()
    register(ocrflux_server, case)
    options = ConversionOptions(figures="crop", figure_scale=3)
    result = await convert_document(case.data, engine=engine, options=options)
    assert result.figures[0].data is not None
    assert_is_the_drawn_figure(base64.b64decode(result.figures[0].data), scale=3)


async def test_without_crop_figures_are_left_out_as_upstream_does(
    ocrflux_server: object, engine: VllmEngine
) -> None:
    case = figure_document()
    register(ocrflux_server, case)
    for options in (ConversionOptions(), ConversionOptions(figures="none")):
        result = await convert_document(case.data, engine=engine, options=options)
        assert result.document_text == FIGURE_TEXT_WITHOUT
        assert result.figures == [] and all(b.figure is None for b in result.blocks)


async def test_text_output_has_no_figure_and_markdown_links_into_the_folder(
    ocrflux_server: object, engine: VllmEngine
) -> None:
    case = figure_document()
    register(ocrflux_server, case)
    options = ConversionOptions(figures="crop", output_format="text")
    result = await convert_document(case.data, engine=engine, options=options)
    assert "Figure 1" not in result.content and "Figure caption text." in result.content
    linked = link_figures(result, "out_figures")
    assert linked.document_text == FIGURE_TEXT.format(link=f"out_figures/{FIGURE_NAME}")
    assert linked.figures[0].ref == f"out_figures/{FIGURE_NAME}"
    assert linked.figures[0].data is None
    for block, before in zip(linked.blocks, result.blocks, strict=True):
        text = linked.document_text[block.start : block.end]
        assert text == result.document_text[before.start : before.end] or block.figure == 1
    assert render_output(linked, "markdown").body == linked.document_text + "\n"


async def test_a_box_off_the_page_is_a_warning_not_a_failure(
    ocrflux_server: object, engine: VllmEngine
) -> None:
    case = figure_document()
    pages = list(FIGURE_PAGES)
    pages[2] = "Closing words.\n\n<Image>(500,900),(900,1000)</Image>"
    register(ocrflux_server, type(case)(case.name, case.data, pages, case.merges))
    result = await convert_document(
        case.data, engine=engine, options=ConversionOptions(figures="crop")
    )
    assert result.status == "completed"
    assert len(result.figures) == 1
    assert [w.code for w in result.warnings] == [FIGURE_IGNORED]
    assert "page 3" in result.warnings[0].message


def test_a_result_without_blocks_is_linked_all_the_same() -> None:
    figure = Figure(number=1, page=1, name=FIGURE_NAME, box=_box(1, 1, 2, 2))
    text = FIGURE_TEXT.format(link=FIGURE_NAME)
    result = DocumentResult(status="completed", document_text=text, content=text, figures=[figure])
    linked = link_figures(result, "doc_figures")
    assert linked.document_text == FIGURE_TEXT.format(link=f"doc_figures/{FIGURE_NAME}")
    assert linked.content == linked.document_text
