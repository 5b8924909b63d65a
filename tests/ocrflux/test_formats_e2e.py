"""Page selections and the json and chunks formats through the direct driver and `ocrflux
convert`, against the OCRFlux-3B test double."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from ocrflux.convert import convert_document
from ocrflux.engines.vllm import VllmEngine
from ocrflux.result_formats import render_output
from ocrflux.vllm_client import VllmClient
from schemas.options import ConversionOptions
from tests.formats import (
    SELECTED_DETECTIONS,
    SELECTED_TEXT,
    SELECTION,
    check_chunks_json,
    check_result_json,
    check_selected_chunks,
    check_selected_result,
    register_selected,
)
from tests.ocrflux.test_convert_command import _convert
from tests.scenarios import register, twelve_page_report


@pytest.fixture
async def engine(ocrflux_server: Any) -> AsyncIterator[VllmEngine]:
    async with VllmClient([ocrflux_server.url], backoff_base_s=0.01) as client:
        yield VllmEngine(client, model=client.model, max_tokens=8192, model_max_len=16384)


async def test_a_selection_merges_only_between_selected_neighbours(
    ocrflux_server: Any, engine: VllmEngine
) -> None:
    data = register_selected(ocrflux_server)
    result = await convert_document(
        data, engine=engine, options=ConversionOptions(pages=SELECTION, output_format="json")
    )
    assert result.document_text == SELECTED_TEXT
    stats = ocrflux_server.stats()
    assert stats["by_task"] == {"page": {"200": 5}, "detect": {"200": SELECTED_DETECTIONS}}
    body = render_output(result).body
    check_selected_result(check_result_json(body))


async def test_chunks_of_a_selection(ocrflux_server: Any, engine: VllmEngine) -> None:
    data = register_selected(ocrflux_server)
    options = ConversionOptions(pages=SELECTION, output_format="chunks", chunk_tokens=40)
    result = await convert_document(data, engine=engine, options=options)
    rendered = render_output(result, chunk_tokens=options.chunk_tokens)
    chunks = check_chunks_json(rendered.body)
    assert chunks["max_tokens"] == 40 and len(chunks["chunks"]) > 2
    check_selected_chunks(chunks)


def test_convert_json_and_chunks_with_several_page_ranges(
    ocrflux_server: Any, tmp_path: Path
) -> None:
    source = tmp_path / "report.pdf"
    source.write_bytes(register_selected(ocrflux_server))
    env = {"VLLM_URL": ocrflux_server.url, "OCRFLUX_ENGINE": "vllm"}
    out = tmp_path / "out.json"
    # `--figures none`: the selection's expected text leaves the report's figure out
    done = _convert(
        str(source),
        "--format",
        "json",
        "--pages",
        SELECTION,
        "-o",
        str(out),
        "--figures",
        "none",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    check_selected_result(check_result_json(out.read_text()))
    chunks = _convert(str(source), "--format", "chunks", "--pages", SELECTION, env=env)
    assert chunks.returncode == 0, chunks.stderr
    check_selected_chunks(check_chunks_json(chunks.stdout))
    assert json.loads(chunks.stdout)["max_tokens"] == 512
    markdown = _convert(str(source), "--pages", SELECTION, env=env)
    assert markdown.stdout == SELECTED_TEXT + "\n"


@pytest.mark.parametrize(
    ("pages", "message"),
    [("3-1", "expected 1 <= first <= last"), ("1-2,x", "pages must look like 1-3,7")],
)
def test_a_bad_selection_is_a_usage_error(tmp_path: Path, pages: str, message: str) -> None:
    done = _convert(str(tmp_path / "x.pdf"), "--pages", pages)
    assert done.returncode == 2 and message in done.stderr, done.stderr


async def test_json_says_which_pages_fell_back_and_why(
    ocrflux_server: Any, engine: VllmEngine
) -> None:
    case = twelve_page_report()
    keys = register(ocrflux_server, case)
    ocrflux_server.add_fault("invalid_json", task="page", pages=[keys[1]])
    options = ConversionOptions(pages="1-3", output_format="json", max_page_retries=2)
    result = await convert_document(case.data, engine=engine, options=options)
    data = check_result_json(render_output(result).body)
    assert data["status"] == "partial" and data["fallback_pages"] == [1]
    fallback = data["pages"][1]
    assert fallback["fallback"] and fallback["attempts"] == 2
    assert fallback["source"] == "text_layer" and fallback["error"]["code"]
    assert [page["fallback"] for page in data["pages"]] == [False, True, False]
    assert data["merges"] == []  # a fallback page takes part in no merge
