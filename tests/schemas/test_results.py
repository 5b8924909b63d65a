"""Result types: a large document's blocks stay small in memory and keep their JSON."""

from __future__ import annotations

import tracemalloc

import pytest
from pydantic import ValidationError

from schemas.results import DocumentResult, TextBlock

#: A 1,000-page text document has about 30 blocks a page.
BLOCKS = 30_000
#: Bytes a block may take with its one-page list (about 220 as a slotted dataclass; a pydantic
#: model took about 640: its field dict and fields-set come with every instance).
MAX_BYTES_A_BLOCK = 300


def test_blocks_of_a_large_document_take_little_memory() -> None:
    tracemalloc.start()
    try:
        blocks = [TextBlock(start=i, end=i + 5, pages=[i // 30]) for i in range(BLOCKS)]
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(blocks) == BLOCKS
    assert used / BLOCKS < MAX_BYTES_A_BLOCK


def test_blocks_validate_and_round_trip_through_json() -> None:
    result = DocumentResult(
        doc_id="d",
        status="completed",
        num_pages=2,
        blocks=[
            TextBlock(start=0, end=5, pages=[0, 1]),
            TextBlock(start=7, end=9, pages=[1], figure=1),
        ],
    )
    data = result.model_dump_json()
    assert '"blocks":[{"start":0,"end":5,"pages":[0,1],"figure":null},' in data
    again = DocumentResult.model_validate_json(data)
    assert again.blocks == result.blocks
    with pytest.raises(ValidationError):
        TextBlock(start=-1, end=5, pages=[0])
