"""Unit tests of the API's parts that need no server: settings, the job state machine, the LRU
cache, admission, spool files, option parsing and the guide's answer shape."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pytest

from connectors.api.admission import Admission
from connectors.api.cache import LruCache, cache_key
from connectors.api.errors import InvalidRequest, Saturated
from connectors.api.jobs import Job, JobStore, convert_response
from connectors.api.models import FAILED_TO_PARSE, json_body
from connectors.api.settings import ApiSettings
from connectors.api.spool import SpoolFolder
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


async def test_lru_cache_keeps_the_most_recent_completed_results() -> None:
    cache = LruCache(entries=2)
    await cache.put("1", result())
    await cache.put("partial", result("partial"))  # degraded: a later conversion may do better
    await cache.put("failed", result("failed"))
    assert await cache.get("partial") is None and await cache.get("failed") is None
    await cache.put("2", result())
    assert await cache.get("1") is not None  # now the most recent
    await cache.put("3", result())
    assert await cache.get("2") is None and len(cache) == 2
    assert cache_key("doc", "vllm") != cache_key("doc", "local")


def test_only_a_completed_document_answers_a_new_submission() -> None:
    store = JobStore(retained=10)
    running = store.add(Job(job_id="running"))
    assert store.add(Job(job_id="running")) is running
    for status in ("completed", "partial", "failed"):
        job = store.add(Job(job_id=status))
        store.finish(job, result(status, fallback_pages=[0] if status == "partial" else []))
        again = store.add(Job(job_id=status))
        assert (again is job) is (status == "completed"), status
        assert job.reusable is (status == "completed")
    assert store.get("partial") is not None and store.get("partial").state == "queued"


def test_admission_holds_a_slot_and_the_upload_bytes_until_released() -> None:
    capacity = [2]
    refusals: list[int] = []
    admission = Admission(
        capacity=lambda: capacity[0],
        max_upload_bytes=100,
        retry_after_s=3,
        on_refusal=lambda: refusals.append(1),
    )
    big = admission.admit(150)  # alone, an upload above the budget is still taken
    with pytest.raises(Saturated) as refused:
        admission.admit(1)  # bytes: 150 already in flight
    assert refused.value.headers == {"Retry-After": "3"}
    big.release()
    big.release()  # once only
    with admission.admit(60), admission.admit(40), pytest.raises(Saturated):
        admission.admit(0)  # both slots taken
    assert (admission.slots, admission.upload_bytes) == (0, 0)
    capacity[0] = 0  # the mode is saturated: nothing is admitted
    with pytest.raises(Saturated, match="saturated"):
        admission.admit(0)
    assert len(refusals) == 3


async def test_a_spool_file_is_removed_by_its_last_holder(tmp_path: Path) -> None:
    folder = SpoolFolder(str(tmp_path / "spool"))
    writer = folder.writer()
    for chunk in (b"%PDF-1.7\n", b"x" * 10_000):
        await writer.write(chunk)
    spool = await writer.finish()
    assert spool.size == 10_009 and spool.head.startswith(b"%PDF-1.7")
    assert spool.sha256 == hashlib.sha256(b"%PDF-1.7\n" + b"x" * 10_000).hexdigest()
    job = spool.hold()
    spool.release()  # the request is done; the job still needs the file
    assert await job.read() == b"%PDF-1.7\n" + b"x" * 10_000
    job.release()
    assert not spool.path.exists()
    discarded = folder.writer()
    discarded.discard()
    assert list(folder.path.iterdir()) == []
    folder.remove()
    assert not folder.path.exists()


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
        "warnings": [],
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
