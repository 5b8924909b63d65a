"""Unit tests of the API's parts that need no server: settings, the job state machine, the LRU
cache, option parsing and the guide's answer shape."""

from __future__ import annotations

import asyncio

import pytest

from connectors.api.cache import LruCache, cache_key
from connectors.api.errors import InvalidRequest
from connectors.api.jobs import Job, JobStore, convert_response
from connectors.api.models import FAILED_TO_PARSE, json_body
from connectors.api.settings import ApiSettings
from connectors.api.uploads import options_from
from schemas.results import DocumentResult, ErrorInfo

GUIDE_ENV = (
    "VLLM_URL",
    "VLLM_PORT",
    "MODEL_NAME",
    "API_HOST",
    "API_PORT",
    "MAX_PAGE_RETRIES",
    "SKIP_CROSS_PAGE_MERGE",
    "OCRFLUX_MODE",
    "API_KEYS",
)


def result(status: str = "completed", **fields: object) -> DocumentResult:
    return DocumentResult(status=status, **fields)  # type: ignore[arg-type]


def test_settings_take_the_guides_defaults_and_names(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in GUIDE_ENV:
        monkeypatch.delenv(name, raising=False)
    settings = ApiSettings()
    assert settings.vllm_url == "http://localhost" and settings.vllm_port == 8003
    assert settings.model_name == "ChatDOC/OCRFlux-3B"
    assert (settings.api_host, settings.api_port) == ("0.0.0.0", 8001)
    assert settings.max_page_retries == 1 and settings.skip_cross_page_merge is False
    assert settings.ocrflux_mode == "direct" and settings.keys == frozenset()
    monkeypatch.setenv("API_PORT", "9001")
    monkeypatch.setenv("SKIP_CROSS_PAGE_MERGE", "true")
    monkeypatch.setenv("API_KEYS", " a , b ,")
    settings = ApiSettings()
    assert settings.api_port == 9001 and settings.skip_cross_page_merge is True
    assert settings.keys == frozenset({"a", "b"})
    with pytest.raises(ValueError):
        ApiSettings(ocrflux_fetch_allow="not-a-network")


async def test_job_state_machine_and_waiting() -> None:
    store = JobStore(retained=2)
    finished: list[str] = []
    store.on_finished(lambda job: finished.append(job.job_id))
    job = store.add(Job(job_id="a"))
    assert store.add(Job(job_id="a")) is job  # a second submission joins the first
    waiter = asyncio.create_task(store.wait(job, timeout_s=5))
    store.running(job, 1, 3)
    assert (job.state, job.pages_done, job.pages_total) == ("running", 1, 3)
    store.finish(job, result(page_texts={"0": "x", "1": "y", "2": "z"}))
    assert await waiter is True
    assert job.state == "completed" and job.pages_done == 3
    store.running(job, 0, 0)  # a terminal job stays terminal
    assert job.state == "completed"
    failed = store.add(Job(job_id="b"))
    store.finish(failed, result("failed", error=ErrorInfo(code="corrupt", message="bad")))
    assert failed.status().error == ErrorInfo(code="corrupt", message="bad")
    assert store.add(Job(job_id="b")) is not failed  # a failed job may be submitted again
    assert finished == ["a", "b"]
    for name in "cde":
        store.fail(store.add(Job(job_id=name)), ErrorInfo(code="x", message="y"))
    assert len(store) == 3 and store.get("a") is None  # b's new run is in flight, kept
    assert await store.wait(store.add(Job(job_id="slow")), timeout_s=0.05) is False


async def test_lru_cache_keeps_the_most_recent_worthwhile_results() -> None:
    cache = LruCache(entries=2)
    await cache.put("1", result())
    await cache.put("2", result("partial"))
    await cache.put("failed", result("failed"))
    assert await cache.get("failed") is None
    assert await cache.get("1") is not None  # now the most recent
    await cache.put("3", result())
    assert await cache.get("2") is None and len(cache) == 2
    assert cache_key("doc", "vllm") != cache_key("doc", "local")


def test_options_from_form_fields() -> None:
    options = options_from(
        {"output_format": "text", "skip_cross_page_merge": "TRUE"},
        default_retries=3,
        default_skip_merge=False,
    )
    assert options.output_format == "text" and options.max_page_retries == 3
    assert options.skip_cross_page_merge is True
    for bad in (
        {"output_format": "html"},
        {"max_page_retries": "0"},
        {"skip_cross_page_merge": "x"},
    ):
        with pytest.raises(InvalidRequest):
            options_from(bad, default_retries=1, default_skip_merge=False)


def test_guide_answer_shapes() -> None:
    ok = convert_response(
        result(content="text", page_texts={"0": "text"}, fallback_pages=[0]),
        source_key="url",
        source="https://example.com/a.pdf",
        file_size=10,
    )
    assert json_body(ok) == {
        "status": "success",
        "format": "markdown",
        "content": "text",
        "error": None,
        "error_code": None,
        "error_detail": None,
        "metadata": {
            "url": "https://example.com/a.pdf",
            "file_size": 10,
            "pages_processed": 1,
            "fallback_pages": [0],
        },
    }
    failed = convert_response(
        result("failed", error=ErrorInfo(code="task_failed", message="no answer")),
        source_key="filename",
        source="a.pdf",
        file_size=1,
    )
    body = json_body(failed)
    assert (body["status"], body["error"], body["error_code"]) == (
        "error",
        FAILED_TO_PARSE,
        "task_failed",
    )
    assert body["content"] is None and body["metadata"]["filename"] == "a.pdf"
