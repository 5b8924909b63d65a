"""The direct driver end to end, through the vLLM client and the OCRFlux-3B test double."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from ocrflux.convert import convert_document
from ocrflux.engines.vllm import VllmEngine
from ocrflux.vllm_client import VllmClient
from schemas.options import ConversionOptions
from tests.scenarios import (
    REPORT_PAGE_TEXTS,
    REPORT_TEXT,
    T3,
    T4,
    T5,
    T45,
    figure_document,
    register,
    twelve_page_report,
)


@pytest.fixture
async def engine(ocrflux_server: object) -> AsyncIterator[VllmEngine]:
    client = VllmClient(
        [ocrflux_server.url],
        request_timeout_s=5,
        transport_retry_budget_s=5,  # type: ignore[attr-defined]
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
    )
    async with client:
        yield VllmEngine(client, model=client.model, max_tokens=8192, model_max_len=16384)


async def test_twelve_page_report_gives_exactly_the_expected_result(
    ocrflux_server: object, engine: VllmEngine
) -> None:
    case = twelve_page_report()
    register(ocrflux_server, case)
    result = await convert_document(case.data, engine=engine, source=case.name)

    assert result.status == "completed", result.error
    assert result.num_pages == 12
    assert result.document_text == REPORT_TEXT
    assert result.page_texts == REPORT_PAGE_TEXTS
    assert result.fallback_pages == []
    assert result.content == REPORT_TEXT
    assert set(result.page_sources.values()) == {"model"}

    log = ocrflux_server.requests()  # type: ignore[attr-defined]
    merges = [r for r in log if r["task"] == "table_merge"]
    assert len(merges) == 2
    # The chain runs last page pair first: (pages 5, 6) must finish before (4, 5) starts.
    assert merges[0]["finished_at"] <= merges[1]["arrived_at"]
    detections = [r for r in log if r["task"] == "detect"]
    assert len(detections) == 9  # 11 page pairs, minus the two that touch the blank page


async def test_skip_cross_page_merge_joins_page_texts(
    ocrflux_server: object, engine: VllmEngine
) -> None:
    case = twelve_page_report()
    register(ocrflux_server, case)
    result = await convert_document(
        case.data, engine=engine, options=ConversionOptions(skip_cross_page_merge=True)
    )
    expected = "\n\n".join(
        text for _, text in sorted(REPORT_PAGE_TEXTS.items(), key=lambda kv: int(kv[0])) if text
    )
    assert result.document_text == expected
    assert T3 in result.document_text and T4 in result.document_text and T45 not in expected
    assert T5 in result.document_text
    stats = ocrflux_server.stats()  # type: ignore[attr-defined]
    assert set(stats["by_task"]) == {"page"}


async def test_text_output_has_tab_separated_tables_and_no_html(
    ocrflux_server: object, engine: VllmEngine
) -> None:
    case = twelve_page_report()
    register(ocrflux_server, case)
    result = await convert_document(
        case.data, engine=engine, options=ConversionOptions(output_format="text")
    )
    assert result.document_text == REPORT_TEXT
    assert "<" not in result.content and "#" not in result.content
    assert "Name\tScore\t\nA\t1\t2\nB\t3\t4\nC\t5\t6" in result.content
    assert "Annual Report\n\nThis report covers" in result.content


async def test_faults_on_thirty_percent_of_requests_never_lose_the_document(
    ocrflux_server_factory: object,
) -> None:
    server = ocrflux_server_factory(stall_seconds=60)  # type: ignore[operator]
    case = twelve_page_report()
    keys = register(server, case)
    always_failing = keys[10]
    server.add_fault("invalid_json", task="page", pages=[always_failing])
    for kind, rate in [
        ("http_500", 0.08),
        ("invalid_json", 0.05),
        ("wrong_keys", 0.04),
        ("length", 0.04),
        ("drop", 0.04),
        ("stall", 0.02),
        ("bad_pairs", 0.03),
    ]:
        server.add_fault(kind, rate=rate, seed=len(kind))
    client = VllmClient(
        [server.url],
        request_timeout_s=1.0,
        transport_retry_budget_s=20,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
    )
    options = ConversionOptions(max_page_retries=4)
    async with client:
        engine = VllmEngine(client, model=client.model, max_tokens=8192, model_max_len=16384)
        results = [
            await convert_document(case.data, engine=engine, options=options) for _ in range(3)
        ]

    log = server.requests()
    answered = {"200", "500", "503"}  # transport failures (drop, stall) use no attempt
    for result in results:
        assert result.status == "partial"
        assert 10 in result.fallback_pages
        # The failed page is filled from its text layer (**Ours**) and marked as such.
        assert result.page_sources["10"] == "text_layer"
        assert result.page_texts["10"] == "Page eleven ends with a sentence."
        assert "Page eleven ends with a sentence." in result.document_text
        for page, text in result.page_texts.items():
            if int(page) not in result.fallback_pages:
                assert text == REPORT_PAGE_TEXTS[page]
    attempts_on_failing_page = [
        r
        for r in log
        if r["page"] == always_failing and r["task"] == "page" and r["status"] in answered
    ]
    assert len(attempts_on_failing_page) == 3 * 4
    assert sum(server.stats()["faults_injected"].values()) > 12 + 10


async def test_unreachable_model_fails_the_document_clearly_instead_of_degrading_it(
    ocrflux_server: object,
) -> None:
    case = twelve_page_report()
    ocrflux_server.set_health("down")  # type: ignore[attr-defined]
    client = VllmClient(
        [ocrflux_server.url],
        request_timeout_s=1.0,  # type: ignore[attr-defined]
        transport_retry_budget_s=0.3,
        backoff_base_s=0.01,
        backoff_cap_s=0.05,
    )
    async with client:
        engine = VllmEngine(client, model=client.model, max_tokens=8192, model_max_len=16384)
        result = await convert_document(case.data, engine=engine)
    # An outage says nothing about the pages: no text-layer stand-ins, a retryable failure.
    assert result.status == "failed"
    assert result.error is not None and result.error.code == "vllm_unavailable"
    assert result.document_text == "" and result.fallback_pages == []


async def test_a_failed_merge_detection_is_a_warning_not_silence(
    ocrflux_server: object, engine: VllmEngine
) -> None:
    case = figure_document()
    register(ocrflux_server, case)
    ocrflux_server.add_fault("garbage_pairs", task="detect", count=2)  # type: ignore[attr-defined]
    result = await convert_document(case.data, engine=engine)
    assert result.status == "completed"
    # Pages 1 and 2 keep their paragraph apart: detection had no valid answer for them.
    assert "A paragraph that runs onto\n\nthe next page." in result.document_text
    assert [(w.code, w.message[:18]) for w in result.warnings] == [
        ("merge_detection_failed", "pages 1 and 2: cro"),
        ("merge_detection_failed", "pages 2 and 3: cro"),
    ]
    assert "no valid answer in 1 attempt" in result.warnings[0].message
