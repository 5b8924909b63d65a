"""The structured text layer: reading order, paragraphs, headings, tables, and usability."""

from __future__ import annotations

import pickle
import random

import pymupdf
import pytest

from ocrflux.engines.base import fallback_page
from ocrflux.render import extract_text_layer, open_document
from ocrflux.tasks import TaskOutcome
from ocrflux.textlayer import TextLayer, read_text_layer
from tests.ocrflux.docgen import (
    make_image,
    make_pdf,
    make_scan,
    make_scanned_pdf,
    make_text_page,
    make_unmapped_pdf,
    paragraph_text,
    table_rows,
)


def first_page(data: bytes) -> pymupdf.Page:
    return pymupdf.open(stream=data, filetype="pdf")[0]


def words(text: str) -> list[str]:
    return text.split()


@pytest.mark.parametrize("font", ["helv", "tiro", "cour"])
def test_simple_page_reads_as_pymupdf_text_up_to_whitespace(font: str) -> None:
    rng = random.Random(11)
    page = make_text_page([paragraph_text(rng, 3) for _ in range(3)], font=font, size=10)
    pdf_page = first_page(page.pdf)
    layer = extract_text_layer(pdf_page)
    assert layer is not None and layer.born_digital
    assert words(layer) == words(pdf_page.get_text())
    assert layer.split("\n\n") == page.elements  # one element per paragraph


def test_two_columns_are_read_column_by_column() -> None:
    rng = random.Random(2)
    paragraphs = [paragraph_text(rng, 4) for _ in range(12)]
    page = make_text_page(paragraphs, columns=2, size=10, right_column_first=True)
    pdf_page = first_page(page.pdf)
    middle = pdf_page.rect.width / 2
    # The right column comes first in the content stream, so stream order would be wrong.
    stream_order = pdf_page.get_text("blocks", sort=False)
    assert stream_order[0][0] > middle and any(b[2] < middle for b in stream_order)
    assert read_text_layer(pdf_page).elements == page.elements


def test_line_break_hyphenation_is_undone_and_real_hyphens_kept() -> None:
    page = make_text_page(
        [
            "A well-known rule.",
            "This is an exam- ple of a broken word.",
            "It was well- known and named after Jean- Paul in COVID- 19 times.",
        ],
        force_breaks={
            1: ["This is an exam-", "ple of a broken word."],
            2: ["It was well-", "known and named after Jean-", "Paul in COVID-", "19 times."],
        },
    )
    elements = read_text_layer(first_page(page.pdf)).elements
    assert elements[1] == "This is an example of a broken word."
    assert elements[2] == "It was well-known and named after Jean-Paul in COVID-19 times."


def test_headings_become_h1_elements() -> None:
    rng = random.Random(3)
    page = make_text_page([paragraph_text(rng, 2)], heading="Quarterly results")
    elements = read_text_layer(first_page(page.pdf)).elements
    assert elements[0] == "# Quarterly results"
    assert not elements[1].startswith("#")


def test_a_ruled_table_becomes_html() -> None:
    rng = random.Random(4)
    rows = table_rows(rng, 4, 3)
    page = make_text_page([paragraph_text(rng, 2)], table=rows)
    reading = read_text_layer(first_page(page.pdf))
    assert reading.tables == 1
    assert reading.elements == page.elements
    assert reading.elements[-1].startswith("<table><tr><td>")
    assert read_text_layer(first_page(page.pdf), tables="never").tables == 0


def test_a_table_ruled_only_between_columns_keeps_its_outer_columns() -> None:
    rng = random.Random(14)
    page = make_text_page(
        [paragraph_text(rng, 1)], table=table_rows(rng, 4, 4), table_borders=False
    )
    reading = read_text_layer(first_page(page.pdf))
    assert reading.tables == 1
    assert reading.elements == page.elements


def test_merged_table_cells_get_spans() -> None:
    doc = pymupdf.open()
    page = doc.new_page()
    x0, y0, w, h = 72, 100, 100, 20
    for r in range(4):  # rows 0..2, the top row is one cell over both columns
        page.draw_line((x0, y0 + r * h), (x0 + 2 * w, y0 + r * h))
    page.draw_line((x0, y0), (x0, y0 + 3 * h))
    page.draw_line((x0 + 2 * w, y0), (x0 + 2 * w, y0 + 3 * h))
    page.draw_line((x0 + w, y0 + h), (x0 + w, y0 + 3 * h))
    page.insert_text((x0 + 4, y0 + 14), "Totals", fontsize=10)
    for r, (a, b) in enumerate([("north", "12"), ("south", "7")], start=1):
        page.insert_text((x0 + 4, y0 + r * h + 14), a, fontsize=10)
        page.insert_text((x0 + w + 4, y0 + r * h + 14), b, fontsize=10)
    table = read_text_layer(page).elements[0]
    assert table == (
        '<table><tr><td colspan="2">Totals</td></tr><tr><td>north</td><td>12</td></tr>'
        "<tr><td>south</td><td>7</td></tr></table>"
    )


def test_unmapped_glyphs_make_the_layer_unusable() -> None:
    reading = read_text_layer(first_page(make_unmapped_pdf("Hello", 10)))
    assert not reading.usable and reading.bad_share > 0.5
    assert "unmapped" in reading.reason
    assert reading.text is None
    assert read_text_layer(first_page(make_unmapped_pdf("Hello there, world", 1))).usable


def test_a_stamp_over_a_scan_is_not_a_usable_layer() -> None:
    scan = make_image("PNG", size=(600, 800), marker=False)
    reading = read_text_layer(first_page(make_scanned_pdf(scan, visible_text="CONFIDENTIAL")))
    assert not reading.usable
    assert reading.image_coverage is not None and reading.image_coverage > 0.9
    # The same few characters without the scan are the whole page's text: usable.
    assert read_text_layer(first_page(make_pdf(["CONFIDENTIAL"]))).usable


def test_an_invisible_ocr_layer_is_usable_but_not_born_digital() -> None:
    scan = make_image("PNG", size=(600, 800), marker=False)
    text = paragraph_text(random.Random(6), 12)
    data = make_scanned_pdf(scan, invisible_text=text)
    layer = extract_text_layer(first_page(data))
    assert isinstance(layer, TextLayer)
    assert layer.origin == "ocr_layer" and not layer.born_digital
    assert words(layer) == words(text)
    # The rendered page carries the same layer.
    with open_document(data) as document:
        rendered = document.render_page(0)
    assert isinstance(rendered.text_layer, TextLayer)
    assert rendered.text_layer.origin == "ocr_layer"


def test_invisible_junk_on_a_born_digital_page_is_left_out() -> None:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 100), "The visible body text of this page is longer.", fontsize=11)
    page.insert_text((72, 140), "hidden", fontsize=11, render_mode=3)
    reading = read_text_layer(page)
    assert reading.origin == "born_digital"
    assert reading.elements == ["The visible body text of this page is longer."]


def test_text_layer_survives_pickling_with_its_origin() -> None:
    layer = TextLayer("a\n\nb", "ocr_layer")
    copy = pickle.loads(pickle.dumps(layer))
    assert copy == "a\n\nb" and copy.origin == "ocr_layer"


def test_images_and_blank_pages_have_no_layer() -> None:
    assert read_text_layer(first_page(make_pdf([None]))).text is None
    scan = make_scan(make_pdf(["Hello"]), dpi=72)
    with open_document(scan) as document:
        assert document.render_page(0).text_layer is None


def test_the_vllm_fallback_uses_the_structured_layer() -> None:
    rng = random.Random(5)
    page = make_text_page([paragraph_text(rng, 2)], heading="Summary", table=table_rows(rng, 3, 2))
    with open_document(page.pdf) as document:
        rendered = document.render_page(0)
    result = fallback_page(rendered, TaskOutcome(attempts=2))
    assert result.source == "text_layer" and result.fallback
    assert result.elements == page.elements
    assert result.elements[0] == "# Summary" and result.elements[-1].startswith("<table>")
