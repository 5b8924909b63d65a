"""Figure boxes: parsed where they stood, bad boxes ignored with a warning, crops at the right
place of a page rendered larger than the model saw it."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw

from ocrflux.figures import (
    FIGURE_IGNORED,
    FigureBox,
    crop_figure,
    figure_markdown,
    figure_name,
    page_figures,
)
from ocrflux.page_parse import page_elements

ANSWER = (
    "# Title\n\nIntro paragraph.\n\n<Image>(100,200),(300,350)</Image>\n\nCaption.\n\n"
    "<Image>( 10 , 20 ) , ( 30 , 40 )</Image>"
)


def test_figures_keep_their_position_among_the_elements() -> None:
    figures, warnings = page_figures(ANSWER, page=4, width=724, height=1024)
    assert warnings == []
    assert [(f.page, f.position, f.box) for f in figures] == [
        (4, 2, FigureBox(100, 200, 300, 350)),
        (4, 3, FigureBox(10, 20, 30, 40)),
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
    assert [f.box for f in figures] == [FigureBox(1, 2, 724, 1025)]
    assert [w.code for w in warnings] == [FIGURE_IGNORED] * 5
    assert all(w.message.startswith("page 1: figure box") for w in warnings)
    assert "inverted" in warnings[0].message and "not inside" in warnings[2].message


def test_no_answer_has_no_figures() -> None:
    assert page_figures(None, page=0, width=10, height=10) == ([], [])


def _page_with_figure(scale: int) -> bytes:
    """A white 724 x 1024 page (times `scale`) with a red box at (100,200)-(300,350) and a blue
    square in its top-left corner."""
    image = Image.new("RGB", (724 * scale, 1024 * scale), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((100 * scale, 200 * scale, 300 * scale - 1, 350 * scale - 1), fill="red")
    draw.rectangle((100 * scale, 200 * scale, 110 * scale - 1, 210 * scale - 1), fill="blue")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_crop_is_the_drawn_figure_at_the_larger_scale() -> None:
    png = crop_figure(_page_with_figure(2), FigureBox(100, 200, 300, 350), (724, 1024))
    with Image.open(io.BytesIO(png)) as crop:
        assert crop.format == "PNG"
        assert crop.size == (400, 300)
        rgb = crop.convert("RGB")
        assert rgb.getpixel((0, 0)) == (0, 0, 255)  # the blue corner marks the box's origin
        assert rgb.getpixel((19, 19)) == (0, 0, 255)
        assert rgb.getpixel((20, 20)) == (255, 0, 0)
        assert rgb.getpixel((399, 299)) == (255, 0, 0)
        colours = {colour for _, colour in rgb.getcolors(maxcolors=16) or []}
        assert colours == {(255, 0, 0), (0, 0, 255)}  # nothing of the white page around it


def test_a_fractional_box_is_widened_to_whole_pixels_and_kept_on_the_page() -> None:
    png = crop_figure(_page_with_figure(1), FigureBox(99.5, 199.5, 724.4, 1024), (724, 1024))
    with Image.open(io.BytesIO(png)) as crop:
        assert crop.size == (724 - 99, 1024 - 199)


def test_names_and_markdown() -> None:
    assert figure_name(3, 6) == "figure-003-page-7.png"
    assert figure_markdown(3, 6, "out_figures/figure-003-page-7.png") == (
        "![Figure 3, page 7](<out_figures/figure-003-page-7.png>)"
    )
