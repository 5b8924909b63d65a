"""Chunks for retrieval: they cover the document text exactly once and in order, keep their
pages (both pages of a merged paragraph or table), their heading path, and whole tables."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocrflux.chunks import chunk_document, default_blocks, estimate_tokens
from ocrflux.result_formats import document_chunks, render_output
from ocrflux.tables import is_table
from schemas.chunks import Chunk, DocumentChunks
from schemas.options import ConversionOptions
from schemas.results import DocumentResult
from tests.formats import result_of
from tests.scenarios import REPORT_TEXT, DocumentCase, generated_cases, twelve_page_report

CASES = generated_cases(20, seed=11, max_pages=12)


def assert_covers_exactly_once(text: str, chunks: list[Chunk], budget: int) -> None:
    at = 0
    for n, chunk in enumerate(chunks):
        assert chunk.index == n
        assert chunk.start >= at and text[at : chunk.start].strip() == "", "a gap with text"
        assert chunk.text == text[chunk.start : chunk.end] and chunk.text.strip() == chunk.text
        assert chunk.text, "an empty chunk"
        assert chunk.tokens == estimate_tokens(chunk.text) <= budget
        at = chunk.end
    assert text[at:].strip() == ""


@pytest.mark.parametrize("budget", [32, 64, 512])
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_chunks_cover_every_generated_document_exactly_once_in_order(
    case: DocumentCase, budget: int
) -> None:
    result = result_of(case)
    chunks = chunk_document(result.document_text, result.blocks, budget)
    assert_covers_exactly_once(result.document_text, chunks, budget)
    for chunk in chunks:
        assert chunk.pages and set(chunk.pages) <= set(range(result.num_pages))
    for block in result.blocks:
        text = result.document_text[block.start : block.end]
        if is_table(text) and estimate_tokens(text) <= budget:  # a table that fits is whole
            assert any(c.start <= block.start and block.end <= c.end for c in chunks)


@settings(max_examples=60, deadline=None)
@given(
    paragraphs=st.lists(
        st.text(alphabet=st.sampled_from("ab .#\n中<>/tr"), min_size=1, max_size=300),
        min_size=1,
        max_size=8,
    ),
    budget=st.integers(min_value=32, max_value=120),
)
def test_any_text_is_covered_exactly_once(paragraphs: list[str], budget: int) -> None:
    text = "\n\n".join(p.strip() or "x" for p in paragraphs)
    chunks = chunk_document(text, default_blocks(text), budget)
    assert_covers_exactly_once(text, chunks, budget)


def test_a_paragraph_and_a_table_merged_across_pages_are_one_chunk_with_both_pages() -> None:
    case = twelve_page_report()
    result = result_of(case)
    assert result.document_text == REPORT_TEXT
    small = chunk_document(result.document_text, result.blocks, 32)
    paragraph = next(c for c in small if "continues on the next page without" in c.text)
    assert paragraph.pages == [0, 1]
    assert paragraph.heading_path == ["Annual Report"]
    cjk = next(c for c in small if "而是在下一页继续" in c.text)
    assert "这是一个跨页的中文段落" in cjk.text
    assert cjk.pages == [6, 7] and cjk.heading_path == ["第二部分"]
    chunks = chunk_document(result.document_text, result.blocks, 512)
    table = next(c for c in chunks if "<td>C</td>" in c.text)
    assert "<td>A</td>" in table.text  # the table merged over pages 4-6 is whole
    assert {3, 4, 5} <= set(table.pages) and table.heading_path == ["Results"]


def test_merges_applied_are_reported_with_the_result() -> None:
    result = result_of(twelve_page_report())
    applied = {(m.page, m.i, m.j): (m.kind, m.applied) for m in result.merges}
    assert applied == {
        (0, 1, 0): ("text", True),
        (1, 1, 0): ("text", True),
        (3, 1, 0): ("table", True),
        (4, 0, 0): ("table", True),
        (6, 1, 0): ("text", True),
    }
    assert [b.pages for b in result.blocks][:2] == [[0], [0, 1]]


def test_a_heading_starts_a_chunk_and_sets_the_path_of_those_under_it() -> None:
    text = "# Part one\n\nShort intro.\n\n## Detail\n\nMore words here.\n\n# Part two\n\nEnd."
    chunks = chunk_document(text, default_blocks(text), 512)
    assert [c.text.split("\n\n")[0] for c in chunks] == ["# Part one", "## Detail", "# Part two"]
    assert [c.heading_path for c in chunks] == [
        ["Part one"],
        ["Part one", "Detail"],
        ["Part two"],
    ]


def test_a_table_too_large_for_the_budget_is_cut_between_rows() -> None:
    rows = "".join(f"<tr><td>row {n} with some words</td></tr>" for n in range(40))
    text = f"Before.\n\n<table>{rows}</table>\n\nAfter."
    chunks = chunk_document(text, default_blocks(text), 64)
    assert_covers_exactly_once(text, chunks, 64)
    table_chunks = [c for c in chunks if "<tr>" in c.text]
    assert len(table_chunks) > 1
    pattern = r"(Before\.\n\n)?(<table>)?(<tr>.*?</tr>)+(</table>)?(\n\nAfter\.)?"
    assert all(re.fullmatch(pattern, c.text) for c in table_chunks)


def test_a_result_without_blocks_is_cut_along_its_paragraphs() -> None:
    text = "One.\n\nTwo.\n\n\nThree."
    result = DocumentResult(status="completed", document_text=text, num_pages=1)
    chunks = document_chunks(result, 32)
    assert isinstance(chunks, DocumentChunks) and chunks.max_tokens == 32
    assert [c.text for c in chunks.chunks] == ["One.\n\nTwo.\n\n\nThree."]
    assert chunks.chunks[0].pages == []


def test_the_default_budget_is_512_and_the_output_is_json() -> None:
    result = result_of(twelve_page_report(), ConversionOptions(output_format="chunks"))
    rendered = render_output(result)
    parsed = DocumentChunks.model_validate_json(rendered.body)
    assert parsed.max_tokens == 512 and rendered.media_type == "application/json"
    assert rendered.suffix == ".chunks.json"
    assert result.content == REPORT_TEXT  # the content stays Markdown
