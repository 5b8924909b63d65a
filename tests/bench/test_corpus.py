"""The benchmark corpus (bench/corpus.py): through the direct driver against the test double
each document comes out as its expected text, with exactly the model requests bench/ideal.py
counts for it (`make test` holds the request counts the benchmarks report as needed)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bench import corpus, harness, ideal


@pytest.mark.parametrize("tables", [True, False])
def test_direct_driver_gives_the_expected_text_and_the_counted_requests(
    ocrflux_server_factory: Any, tables: bool
) -> None:
    server = ocrflux_server_factory(page_key="bytes", capacity=16)
    documents = corpus.corpus(2, 16, f"corpus-{tables}", tables=tables)
    corpus.register(server, documents)
    results = asyncio.run(harness.direct_convert(server.url, [d.case.data for d in documents]))
    for document, result in zip(documents, results, strict=True):
        assert result.status == "completed"
        assert result.document_text == document.expected
    counted = harness.requests_by_kind(server.stats())
    assert counted == ideal.counts(corpus.calls(documents))
    assert counted["table_merge" if tables else "detect"] == (8 if tables else 30)


def test_pages_come_in_groups_of_eight() -> None:
    with pytest.raises(ValueError):
        corpus.merge_document("odd", 12)
