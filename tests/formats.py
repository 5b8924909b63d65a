"""What every surface's tests of page selections and output formats check (issue 14).

The case is the twelve-page report with `SELECTION` (pages 1-3 and 7-8): three cross-page
merges lie inside the selection, and `register_selected` also teaches the double a merge
between pages 3 and 7, which are not neighbours in the document, so a driver that treated
them as neighbours would ask for it and change the text.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

from ocrflux.document import build_result
from ocrflux.merge import merge_tables_without_model, table_pairs
from schemas.export import JSON_DIR
from schemas.options import ConversionOptions
from schemas.results import DocumentResult, PageResult, TokenUsage
from tests.scenarios import DocumentCase, register, twelve_page_report

SELECTION = "1-3,7-8"
SELECTED = [0, 1, 2, 6, 7]
SELECTED_TEXT = (
    "# Annual Report\n\n"
    "This report covers the year and its paragraph continues on the next page without a break."
    "\n\nSecond page has its own paragraph. It ends with a hyphenated exam-ple word completing "
    "the split.\n\n"
    "A caption after the figure.\n\n"
    "# 第二部分\n\n"
    "这是一个跨页的中文段落，它在这一页没有结束而是在下一页继续。\n\n"
    "English text again."
)
#: Detections within the selection: pages (1, 2), (2, 3) and (7, 8), 1-based.
SELECTED_DETECTIONS = 3


def register_selected(server: Any) -> bytes:
    """Teach the double the report, and a merge between pages 3 and 7; the report's bytes."""
    case = twelve_page_report()
    register(server, case)
    server.register_merges(case.elements(2), case.elements(6), [(1, 0)])
    return case.data


def _schema(name: str) -> dict[str, Any]:
    return json.loads((JSON_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))


def check_result_json(body: str | bytes | dict[str, Any]) -> dict[str, Any]:
    """`output_format=json`: valid against the exported document result schema."""
    data = json.loads(body) if isinstance(body, str | bytes) else body
    jsonschema.validate(data, _schema("document_result"))
    return data


def check_chunks_json(
    body: str | bytes | dict[str, Any], text: str = SELECTED_TEXT
) -> dict[str, Any]:
    """`output_format=chunks`: valid against its schema; the chunks cover the document text
    exactly once, in order (only whitespace between them)."""
    data = json.loads(body) if isinstance(body, str | bytes) else body
    jsonschema.validate(data, _schema("document_chunks"))
    at = 0
    for chunk in data["chunks"]:
        assert text[at : chunk["start"]].strip() == "", "text between two chunks"
        assert text[chunk["start"] : chunk["end"]] == chunk["text"]
        at = chunk["end"]
    assert text[at:].strip() == ""
    return data


def check_selected_result(data: dict[str, Any]) -> None:
    """The json output of the selection: its pages, merges and blocks."""
    assert data["status"] == "completed"
    assert data["document_text"] == SELECTED_TEXT
    assert sorted(map(int, data["page_texts"])) == SELECTED
    assert [page["index"] for page in data["pages"]] == SELECTED
    assert all(page["attempts"] >= 1 and page["source"] == "model" for page in data["pages"])
    assert [(m["page"], m["kind"], m["applied"]) for m in data["merges"]] == [
        (0, "text", True),
        (1, "text", True),
        (6, "text", True),
    ]
    assert [b["pages"] for b in data["blocks"]] == [[0], [0, 1], [1, 2], [2], [6], [6, 7], [7]]


def check_selected_chunks(data: dict[str, Any]) -> None:
    chunks = data["chunks"]
    merged = next(c for c in chunks if "continues on the next page without" in c["text"])
    assert {0, 1} <= set(merged["pages"])
    cjk = next(c for c in chunks if "而是在下一页继续" in c["text"])
    assert {6, 7} <= set(cjk["pages"]) and cjk["heading_path"] == ["第二部分"]


def result_of(case: DocumentCase, options: ConversionOptions | None = None) -> DocumentResult:
    """The document result the drivers build for a case, without a model (table merges by
    `merge_tables_without_model`): for tests of what is made of results."""
    done = {p: PageResult(index=p, elements=case.elements(p)) for p in range(len(case.model_pages))}
    pages = [done[p].elements for p in sorted(done)]
    merged: dict[tuple[int, int], str] = {}
    for pair in table_pairs(pages, case.merges):  # last page pair first, as the chains run
        second = merged.get(pair.second) or pages[pair.page + 1][pair.j]
        html = merge_tables_without_model(pages[pair.page][pair.i], second)
        if html is not None:
            merged[pair.first] = html
    return build_result(
        done=done,
        num_pages=len(done),
        pairs={p: list(found) for p, found in case.merges.items()},
        merged_tables=merged,
        options=options or ConversionOptions(),
        usage=TokenUsage(),
    )
