"""Page selections and output formats in the conversion options, and records of the previous
version (with `page_range`) still accepted."""

from __future__ import annotations

import json

import jsonschema
import pytest
from pydantic import ValidationError

from schemas.export import JSON_DIR
from schemas.options import ConversionOptions
from schemas.page_ranges import format_pages, parse_pages, selected_indices
from schemas.records import DocumentInfo, DocumentRequest, decode


@pytest.mark.parametrize(
    ("text", "ranges"),
    [
        ("1-3,7", ((1, 3), (7, 7))),
        (" 7 , 1-3 ", ((1, 3), (7, 7))),
        ("2-4,3-6", ((2, 6),)),
        ("1-2,3", ((1, 3),)),  # adjacent ranges join
        ("5", ((5, 5),)),
    ],
)
def test_a_selection_is_parsed_once_and_kept_normalised(
    text: str, ranges: tuple[tuple[int, int], ...]
) -> None:
    assert parse_pages(text) == ranges
    assert ConversionOptions(pages=text).pages == ranges
    assert ConversionOptions(pages=[list(r) for r in reversed(ranges)]).pages == ranges
    assert parse_pages(format_pages(ranges)) == ranges


@pytest.mark.parametrize("text", ["", "1-", "a-3", "3-1", "0-2", "1,,2", "1-2-3"])
def test_a_bad_selection_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="page"):
        parse_pages(text)
    with pytest.raises(ValidationError):
        ConversionOptions(pages=text)


def test_selected_indices_clip_at_the_end_and_refuse_a_range_after_it() -> None:
    assert selected_indices(((1, 3), (7, 7)), 10) == [0, 1, 2, 6]
    assert selected_indices(((4, 99),), 5) == [3, 4]
    assert selected_indices(None, 3) == [0, 1, 2]
    with pytest.raises(ValueError, match="starts after the last page"):
        selected_indices(((1, 2), (6, 6)), 5)


def test_the_same_pages_give_the_same_options_however_written() -> None:
    assert ConversionOptions(pages="7,1-3") == ConversionOptions(pages=[[1, 2], [3, 3], [7, 7]])


def test_a_record_of_the_previous_version_with_page_range_is_accepted() -> None:
    old = {
        "kind": "document_request",
        "schema_version": 1,
        "content": "JVBERi0=",
        "options": {"output_format": "markdown", "page_range": [2, 5]},
    }
    schema = json.loads((JSON_DIR / "document_request.schema.json").read_text())
    jsonschema.validate(old, schema)
    request = decode(json.dumps(old))
    assert isinstance(request, DocumentRequest)
    assert request.options.pages == ((2, 5),)
    assert request.options == ConversionOptions(pages="2-5")
    with pytest.raises(ValidationError, match="not both"):
        ConversionOptions.model_validate({"page_range": [1, 2], "pages": "3"})
    with pytest.raises(ValidationError, match="page_range must be"):
        ConversionOptions.model_validate({"page_range": [5, 2]})


def test_document_info_knows_the_selected_pages() -> None:
    options = ConversionOptions(pages="1-3,7")
    info = DocumentInfo(first_page=0, stop_page=7, num_pages=10, options=options)
    assert info.page_indices() == [0, 1, 2, 6]
    assert info.pages_total == 4
    whole = DocumentInfo(first_page=2, stop_page=5, num_pages=10, options=ConversionOptions())
    assert whole.page_indices() == [2, 3, 4] and whole.pages_total == 3


def test_chunk_tokens_go_with_the_chunks_format() -> None:
    assert ConversionOptions(output_format="chunks", chunk_tokens=256).chunk_tokens == 256
    with pytest.raises(ValidationError, match="chunk_tokens goes with"):
        ConversionOptions(output_format="json", chunk_tokens=256)
    with pytest.raises(ValidationError):
        ConversionOptions(output_format="chunks", chunk_tokens=5)


def test_options_without_the_new_fields_serialise_as_the_previous_version_did() -> None:
    # The previous version's JSON of default options: the same doc_ids, and records its
    # workers (which forbid unknown fields) still read.
    previous = {
        "output_format": "markdown",
        "max_page_retries": 1,
        "skip_cross_page_merge": False,
        "page_range": None,
        "engine": None,
    }
    assert ConversionOptions().model_dump(mode="json") == previous
    assert json.loads(ConversionOptions().model_dump_json()) == previous
    selected = ConversionOptions(pages="1-3,7", output_format="chunks", chunk_tokens=100)
    dumped = selected.model_dump(mode="json")
    assert dumped["pages"] == [[1, 3], [7, 7]] and dumped["chunk_tokens"] == 100
    assert ConversionOptions.model_validate(dumped) == selected


def test_figures_none_is_the_same_options_as_unset() -> None:
    assert ConversionOptions(figures="none") == ConversionOptions()
    assert (
        ConversionOptions(figures="none").model_dump_json() == ConversionOptions().model_dump_json()
    )
    assert "figures" in ConversionOptions(figures="crop").model_dump()
