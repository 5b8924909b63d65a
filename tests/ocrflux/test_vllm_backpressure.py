"""VllmClient against the OCRFlux-3B test double over loopback: back-pressure (429/503), closed
connections, stalls and outages, and waiting for the model to come back.

The double's request log (`requests()`, times in seconds since it started) is the witness of
what reached the "model": how many requests, at which temperature, and when.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from ocrflux.chat import ChatAnswerError, ChatRequest
from ocrflux.engines.vllm import VllmEngine
from ocrflux.errors import ModelUnavailable
from ocrflux.pages import RenderedPage
from ocrflux.vllm_client import ClientStats, VllmClient
from ocrflux.vllm_wire import ServerBusy
from tests.fakes.chat_requests import sample_png
from tests.fakes.truth import PAGE_PROMPT

PAGE = sample_png(color=(12, 34, 56))
TEXT = "The page as the model reads it."
WAIT_S = 10.0  # deadline of every condition wait here; reached only when something is broken


class RecordingSleep:
    """The client's back-off sleep, recorded (it still sleeps: the double runs in real time)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(delay)


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def make_client(sleeps: RecordingSleep) -> AsyncIterator[Callable[..., VllmClient]]:
    clients: list[VllmClient] = []

    def make(url: str, **options: Any) -> VllmClient:
        settings: dict[str, Any] = {
            "request_timeout_s": 5.0,
            "transport_retry_budget_s": 10.0,
            "backoff_base_s": 0.01,
            "backoff_cap_s": 0.05,
            "sleep": sleeps,
            **options,
        }
        client = VllmClient([url], **settings)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def page_request(temperature: float = 0.0) -> ChatRequest:
    return ChatRequest(PAGE_PROMPT, PAGE, temperature, 8192)


def rendered_page() -> RenderedPage:
    return RenderedPage(index=0, png=PAGE, width=120, height=170, text_layer="the text layer")


def engine_for(client: VllmClient) -> VllmEngine:
    return VllmEngine(client, model=client.model, max_tokens=8192, model_max_len=16384)


def page_log(double: Any) -> list[dict[str, Any]]:
    return [r for r in double.requests() if r["task"] == "page"]


def assert_counters_add_up(stats: ClientStats) -> None:
    assert stats.requests_sent == (
        stats.successes
        + stats.answer_errors
        + stats.transport_errors
        + stats.backpressure
        + stats.cancelled
    )
    assert stats.transport_errors + stats.backpressure == (
        stats.transport_retries + stats.backpressure_retries + stats.unavailable
    )


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for `condition` with a deadline (polling: it reads state another loop changes)."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.01)


# --- back-pressure ----------------------------------------------------------------------------


async def test_429s_are_waited_out_and_the_page_is_still_recognized(
    ocrflux_server: Any, make_client: Callable[..., VllmClient]
) -> None:
    ocrflux_server.register_page(PAGE, TEXT)
    await ocrflux_server.aio.add_fault("http_429", count=3, retry_after=0.05)
    async with make_client(ocrflux_server.url) as client:
        page = await engine_for(client).recognize_page(rendered_page(), max_attempts=1)
        assert (page.source, page.elements, page.attempts) == ("model", [TEXT], 1)
        stats = client.stats
        assert (stats.backpressure, stats.backpressure_retries, stats.answer_errors) == (3, 3, 0)
        assert client.health() == {ocrflux_server.url: True}
        assert_counters_add_up(stats)
    log = page_log(ocrflux_server)
    assert [r["status"] for r in log] == ["429", "429", "429", "200"]
    assert {r["temperature"] for r in log} == {0.0}


async def test_retry_after_is_honoured(
    ocrflux_server: Any, make_client: Callable[..., VllmClient]
) -> None:
    await ocrflux_server.aio.add_fault("http_429", count=1, retry_after=1)
    async with make_client(ocrflux_server.url) as client:
        await client.complete(page_request())
    refused, served = page_log(ocrflux_server)
    # The 429 was logged before it was sent, so the gap is at least the client's wait (the
    # small margin covers the event loop's timer granularity).
    assert served["arrived_at"] - refused["finished_at"] >= 0.99
    assert served["arrived_at"] - refused["finished_at"] < 30


async def test_persistent_503_ends_in_model_unavailable(
    ocrflux_server: Any, make_client: Callable[..., VllmClient]
) -> None:
    await ocrflux_server.aio.add_fault("http_503", retry_after=0.05)
    async with make_client(ocrflux_server.url, transport_retry_budget_s=0.3) as client:
        with pytest.raises(ModelUnavailable) as info:
            await client.complete(page_request())
        assert isinstance(info.value.__cause__, ServerBusy)
        assert client.stats.answer_errors == 0 and client.stats.unavailable == 1
        assert client.health() == {ocrflux_server.url: False}
        assert_counters_add_up(client.stats)
    log = page_log(ocrflux_server)
    assert len(log) >= 2 and {r["status"] for r in log} == {"503"}
    assert {r["temperature"] for r in log} == {0.0}


# --- connections ------------------------------------------------------------------------------


async def test_a_closed_keep_alive_is_retried_at_once_on_a_new_connection(
    ocrflux_server: Any, make_client: Callable[..., VllmClient], sleeps: RecordingSleep
) -> None:
    async with make_client(ocrflux_server.url) as client:
        await client.complete(page_request())  # leaves a kept-alive connection in the pool
        await ocrflux_server.aio.add_fault("drop", count=1)
        await client.complete(page_request())
        stats = client.stats
        assert sleeps.delays == []
        assert (stats.reconnects, stats.transport_errors, stats.successes) == (1, 1, 2)
        assert client.health() == {ocrflux_server.url: True}
        assert_counters_add_up(stats)


async def test_only_the_first_closed_connection_is_retried_at_once(
    ocrflux_server: Any, make_client: Callable[..., VllmClient], sleeps: RecordingSleep
) -> None:
    async with make_client(ocrflux_server.url) as client:
        await client.complete(page_request())
        await ocrflux_server.aio.add_fault("drop", count=2)
        await client.complete(page_request())
        assert (client.stats.reconnects, client.stats.transport_errors) == (1, 2)
        assert len(sleeps.delays) == 1


async def test_a_dropped_new_connection_backs_off(
    ocrflux_server: Any, make_client: Callable[..., VllmClient], sleeps: RecordingSleep
) -> None:
    await ocrflux_server.aio.add_fault("drop", count=1)
    async with make_client(ocrflux_server.url) as client:
        await client.complete(page_request())  # the first request opens a new connection
        assert (client.stats.reconnects, len(sleeps.delays)) == (0, 1)


@pytest.mark.parametrize(("kind", "timeout"), [("drop_mid_body", 5.0), ("stall", 0.3)])
async def test_broken_and_stalled_answers_are_transport_retries(
    ocrflux_server: Any, make_client: Callable[..., VllmClient], kind: str, timeout: float
) -> None:
    ocrflux_server.register_page(PAGE, TEXT)
    await ocrflux_server.aio.add_fault(kind, count=1)
    async with make_client(ocrflux_server.url, request_timeout_s=timeout) as client:
        page = await engine_for(client).recognize_page(rendered_page(), max_attempts=1)
        assert (page.source, page.elements) == ("model", [TEXT])
        assert (client.stats.transport_errors, client.stats.answer_errors) == (1, 0)


async def test_content_faults_are_answers_the_engine_survives(
    ocrflux_server: Any, make_client: Callable[..., VllmClient]
) -> None:
    ocrflux_server.register_page(PAGE, TEXT)
    await ocrflux_server.aio.add_fault("non_page_json", count=1)
    await ocrflux_server.aio.add_fault("huge_answer", count=1)
    async with make_client(ocrflux_server.url) as client:
        engine = engine_for(client)
        rejected = await engine.recognize_page(rendered_page(), max_attempts=1)
        assert rejected.source == "text_layer"
        with pytest.raises(ChatAnswerError, match="over the request's max_tokens"):
            await client.complete(page_request())
        assert client.stats.answer_errors == 1


async def test_an_answer_over_max_tokens_is_a_spent_attempt_never_the_page(
    ocrflux_server: Any, make_client: Callable[..., VllmClient]
) -> None:
    ocrflux_server.register_page(PAGE, TEXT)
    await ocrflux_server.aio.add_fault("huge_answer", count=1)
    async with make_client(ocrflux_server.url) as client:
        page = await engine_for(client).recognize_page(rendered_page(), max_attempts=2)
        assert (page.source, page.elements, page.attempts) == ("model", [TEXT], 2)


# --- outages and waiting for the model --------------------------------------------------------


async def test_an_outage_is_model_unavailable_and_ends_when_cleared(
    ocrflux_server: Any, make_client: Callable[..., VllmClient]
) -> None:
    async with make_client(ocrflux_server.url, transport_retry_budget_s=0.2) as client:
        await client.complete(page_request())
        await ocrflux_server.aio.set_health("outage")
        with pytest.raises(ModelUnavailable):
            await client.complete(page_request())
        assert client.stats.answer_errors == 0
        await ocrflux_server.aio.set_health("ok")
        await client.wait_until_healthy(poll_s=0.05)
        assert (await client.complete(page_request())).finish_reason == "stop"


async def test_wait_until_healthy_returns_at_once_after_a_recent_answer(
    ocrflux_server: Any, make_client: Callable[..., VllmClient]
) -> None:
    async with make_client(ocrflux_server.url) as client:
        await client.complete(page_request())
        await asyncio.wait_for(client.wait_until_healthy(poll_s=60.0), WAIT_S)
    assert ocrflux_server.stats()["health_probes"] == 0


async def test_wait_until_healthy_polls_through_an_outage(
    ocrflux_server: Any, make_client: Callable[..., VllmClient]
) -> None:
    poll_s = 0.05
    await ocrflux_server.aio.set_health("outage")
    async with make_client(ocrflux_server.url) as client:
        started = time.monotonic()
        waiting = asyncio.create_task(client.wait_until_healthy(poll_s))
        await ocrflux_server.aio.wait_for(health_probes=3, timeout=WAIT_S)
        assert not waiting.done()
        await ocrflux_server.aio.set_health("ok")
        await asyncio.wait_for(waiting, WAIT_S)
        elapsed = time.monotonic() - started
    probes = ocrflux_server.stats()["health_probes"]
    assert 4 <= probes <= elapsed / poll_s + 2  # it sleeps between probes, never spins


async def test_wait_until_healthy_across_a_process_restart(
    ocrflux_subprocess_factory: Callable[..., Any], make_client: Callable[..., VllmClient]
) -> None:
    first = ocrflux_subprocess_factory()
    port = int(first.url.rsplit(":", 1)[1])
    loop = asyncio.get_running_loop()
    async with make_client(first.url, transport_retry_budget_s=0.2) as client:
        await client.complete(page_request())
        assert await loop.run_in_executor(None, first.stop) == 0
        with pytest.raises(ModelUnavailable):
            await client.complete(page_request())
        waiting = asyncio.create_task(client.wait_until_healthy(poll_s=0.05))
        await until(lambda: not any(client.health().values()), "the client saw the outage")
        assert not waiting.done()
        second = await loop.run_in_executor(None, lambda: ocrflux_subprocess_factory(port=port))
        await asyncio.wait_for(waiting, WAIT_S)
        assert second.stats()["health_probes"] >= 1
        assert (await client.complete(page_request())).finish_reason == "stop"


async def test_wait_until_healthy_on_a_closed_client(
    ocrflux_server: Any, make_client: Callable[..., VllmClient]
) -> None:
    await ocrflux_server.aio.set_health("outage")
    client = make_client(ocrflux_server.url)
    waiting = asyncio.create_task(client.wait_until_healthy(poll_s=0.05))
    await ocrflux_server.aio.wait_for(health_probes=1, timeout=WAIT_S)
    await client.close()
    with pytest.raises(ModelUnavailable):
        await asyncio.wait_for(waiting, WAIT_S)
