"""VllmClient against small real aiohttp servers on 127.0.0.1 whose handlers the tests control.

Blocking handlers wait on an `asyncio.Event` that the test opens; the back-off runs on a fake
clock, so nothing here waits on wall-clock sleeps (only the timeout test lets a 0.1 s request
timeout fire, which is the behaviour under test).
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from ocrflux.chat import ChatAnswerError, ChatRequest
from ocrflux.errors import ModelUnavailable
from ocrflux.vllm_client import ClientStats, VllmClient, server_urls
from ocrflux.vllm_routing import ServerPool
from ocrflux.vllm_wire import (
    RETRY_AFTER_CAP_S,
    ServerBusy,
    encode_request_body,
    parse_retry_after,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3


def completion(content: str = "ok", *, finish: str = "stop", usage: bool = True) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": "cmpl-1",
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": finish,
            }
        ],
    }
    if usage:
        answer["usage"] = {"prompt_tokens": 11, "completion_tokens": 5, "total_tokens": 16}
    return answer


class FakeVllm:
    """A vLLM stand-in: records bodies and concurrency, blocks on `gate`, answers via `answer`."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.arrivals: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.gate = asyncio.Event()
        self.gate.set()
        self.answer: Callable[[dict[str, Any]], web.Response] = lambda body: web.json_response(
            completion(body["messages"][0]["content"][0]["text"])
        )
        self.health_status = 200
        self.health_hits: asyncio.Queue[int] = asyncio.Queue()
        self.concurrent = 0
        self.max_concurrent = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/health", self._health)
        app.router.add_get("/v1/models", self._models)
        return app

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        self.arrivals.put_nowait(body)
        try:
            await self.gate.wait()
        finally:
            self.concurrent -= 1
        return self.answer(body)

    async def _health(self, request: web.Request) -> web.Response:
        self.health_hits.put_nowait(self.health_status)
        return web.Response(status=self.health_status)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "ChatDOC/OCRFlux-3B"}]})


class FakeTime:
    """Clock and sleep for the back-off: sleeping advances the clock and returns at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        self.now += delay
        await asyncio.sleep(0)


StartFake = Callable[[], Awaitable[tuple[FakeVllm, str]]]


@pytest.fixture
async def start_fake() -> AsyncIterator[StartFake]:
    started: list[tuple[FakeVllm, TestServer]] = []

    async def start() -> tuple[FakeVllm, str]:
        fake = FakeVllm()
        server = TestServer(fake.app(), host="127.0.0.1")
        await server.start_server()
        started.append((fake, server))
        return fake, f"http://127.0.0.1:{server.port}"

    yield start
    for fake, server in started:
        fake.gate.set()  # let blocked handlers finish so the server shuts down at once
        await server.close()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A loopback port that is bound but not listening: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.fixture
async def dropping_url() -> AsyncIterator[str]:
    """A loopback server that closes every connection once the request starts arriving."""

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    server.close()
    await server.wait_closed()


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def client_for(servers: list[str], fake_time: FakeTime, **kwargs: Any) -> VllmClient:
    return VllmClient(
        servers, sleep=fake_time.sleep, clock=fake_time.clock, rng=random.Random(7), **kwargs
    )


def req(prompt: str = "p", **kwargs: Any) -> ChatRequest:
    return ChatRequest(prompt=prompt, image_png=PNG, **kwargs)


async def arrivals(fake: FakeVllm, n: int) -> list[dict[str, Any]]:
    return [await asyncio.wait_for(fake.arrivals.get(), 5) for _ in range(n)]


# --- request and answer ----------------------------------------------------------------------


async def test_request_body_has_the_protocol_shape(start_fake: StartFake, fake_time: FakeTime):
    fake, url = await start_fake()
    prompt = 'Below is "the" page\\n\n\u2028 é 表'
    async with client_for([url], fake_time, model="m-1", max_tokens=123) as client:
        await client.complete(req(prompt, temperature=0.2))
        await client.complete(req(prompt, max_tokens=7))
    image = {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()}
    content = [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": image}]
    messages = [{"role": "user", "content": content}]
    assert fake.bodies == [
        {"model": "m-1", "messages": messages, "temperature": 0.2, "max_tokens": 123},
        {"model": "m-1", "messages": messages, "temperature": 0.0, "max_tokens": 7},
    ]
    assert list(fake.bodies[0]) == ["model", "messages", "temperature", "max_tokens"]


async def test_max_tokens_none_is_omitted(start_fake: StartFake, fake_time: FakeTime):
    fake, url = await start_fake()
    async with client_for([url], fake_time, max_tokens=None) as client:
        await client.complete(req())
    assert "max_tokens" not in fake.bodies[0]
    assert fake.bodies[0]["model"] == "ChatDOC/OCRFlux-3B"


def test_encoded_body_is_the_json_of_the_request():
    odd = 'quote " backslash \\ nul \x00 surrogate \ud800 tab \t'
    body = encode_request_body("m", ChatRequest(odd, PNG, 0.5), None)
    assert json.loads(body)["messages"][0]["content"][0]["text"] == odd
    with pytest.raises(ValueError):
        encode_request_body("m", ChatRequest("p", PNG, float("nan")), None)


async def test_success_is_parsed(start_fake: StartFake, fake_time: FakeTime):
    fake, url = await start_fake()
    async with client_for([url], fake_time) as client:
        response = await client.complete(req("hello"))
        assert (response.content, response.finish_reason) == ("hello", "stop")
        assert (response.prompt_tokens, response.completion_tokens) == (11, 5)
        assert response.latency_s >= 0
        fake.answer = lambda body: web.json_response(completion("x", finish="length", usage=False))
        response = await client.complete(req())
        assert (response.content, response.finish_reason) == ("x", "length")
        assert (response.prompt_tokens, response.completion_tokens) == (0, 0)


@pytest.mark.parametrize(("status", "retry_statuses"), [(400, ()), (404, ()), (500, ()), (502, ())])
async def test_non_200_is_an_answer_error(
    start_fake: StartFake, fake_time: FakeTime, status: int, retry_statuses: tuple[int, ...]
):
    fake, url = await start_fake()
    fake.answer = lambda body: web.json_response(
        {"object": "error", "message": "no"}, status=status, headers={"Retry-After": "1"}
    )
    async with client_for([url], fake_time, retry_statuses=retry_statuses) as client:
        with pytest.raises(ChatAnswerError) as info:
            await client.complete(req())
        assert info.value.status == status
        assert len(fake.bodies) == 1 and fake_time.sleeps == []
        assert (client.stats.answer_errors, client.stats.transport_errors) == (1, 0)
        assert client.health() == {url: True}


@pytest.mark.parametrize(
    "body",
    [
        b"<html>not json</html>",
        b'{"choices": []}',
        b'{"choices": [{"message": {"role": "assistant"}}]}',
        b'{"choices": [{"message": {"content": null}, "finish_reason": "stop"}]}',
        b"[1, 2]",
    ],
)
async def test_unusable_200_is_an_answer_error(
    start_fake: StartFake, fake_time: FakeTime, body: bytes
):
    fake, url = await start_fake()
    fake.answer = lambda _: web.Response(body=body, content_type="application/json")
    async with client_for([url], fake_time) as client:
        with pytest.raises(ChatAnswerError) as info:
            await client.complete(req())
    assert info.value.status == 200


# --- transport errors ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["refused", "dropped"])
async def test_transport_error_is_retried_on_the_other_server(
    start_fake: StartFake, fake_time: FakeTime, refused_url: str, dropping_url: str, bad: str
):
    bad_url = refused_url if bad == "refused" else dropping_url
    fake, good_url = await start_fake()
    async with client_for([bad_url, good_url], fake_time) as client:
        response = await client.complete(req("again"))  # the first pick is the bad server
        assert response.content == "again"
        assert len(fake.bodies) == 1
        assert len(fake_time.sleeps) == 1 and 0 <= fake_time.sleeps[0] <= 0.25
        assert client.health() == {bad_url: False, good_url: True}
        stats = client.stats
        assert (stats.requests_sent, stats.successes, stats.answer_errors) == (2, 1, 0)
        assert (stats.transport_errors, stats.transport_retries, stats.unavailable) == (1, 1, 0)


async def test_budget_spent_raises_model_unavailable(refused_url: str, fake_time: FakeTime):
    async with client_for(
        [refused_url],
        fake_time,
        transport_retry_budget_s=5.0,
        backoff_base_s=1.0,
        backoff_cap_s=2.0,
    ) as client:
        with pytest.raises(ModelUnavailable) as info:
            await client.complete(req())
        assert isinstance(info.value.__cause__, aiohttp.ClientConnectionError)
        sleeps = fake_time.sleeps
        assert sum(sleeps) == pytest.approx(5.0)  # the last sleep is cut to the budget
        assert 0 <= sleeps[0] <= 1.0 and all(0 <= s <= 2.0 for s in sleeps)
        stats = client.stats
        assert stats.transport_errors == len(sleeps) + 1 == stats.requests_sent
        assert (stats.transport_retries, stats.unavailable) == (len(sleeps), 1)


async def test_zero_budget_gives_up_at_once(refused_url: str, fake_time: FakeTime):
    async with client_for([refused_url], fake_time, transport_retry_budget_s=0) as client:
        with pytest.raises(ModelUnavailable):
            await client.complete(req())
    assert fake_time.sleeps == []


async def test_request_timeout_is_a_transport_retry(start_fake: StartFake, fake_time: FakeTime):
    stuck, stuck_url = await start_fake()
    stuck.gate.clear()  # never opened during the test
    fake, url = await start_fake()
    async with client_for([stuck_url, url], fake_time, request_timeout_s=0.1) as client:
        response = await client.complete(req("after timeout"))
        assert response.content == "after timeout"
        assert (len(stuck.bodies), len(fake.bodies)) == (1, 1)
        assert (client.stats.transport_errors, client.stats.successes) == (1, 1)
        assert client.health()[stuck_url] is False


# --- back-pressure: 429, 503 and a proxy's 502/504 -------------------------------------------


def answers(*responses: Callable[[], web.Response]) -> Callable[[dict[str, Any]], web.Response]:
    """Answer with `responses` in turn, then with completions echoing the prompt."""
    queue = list(responses)

    def answer(body: dict[str, Any]) -> web.Response:
        if queue:
            return queue.pop(0)()
        return web.json_response(completion(body["messages"][0]["content"][0]["text"]))

    return answer


def busy(status: int = 429, retry_after: str | None = None) -> Callable[[], web.Response]:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return lambda: web.json_response(
        {"object": "error", "message": "busy"}, status=status, headers=headers
    )


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


async def test_429_waits_as_asked_on_another_server_and_keeps_health(
    start_fake: StartFake, fake_time: FakeTime
):
    busy_fake, busy_url = await start_fake()
    busy_fake.answer = answers(busy(429, "3"))
    fake, url = await start_fake()
    async with client_for([busy_url, url], fake_time) as client:
        response = await client.complete(req("later", temperature=0.3))
        assert response.content == "later"
        [slept] = fake_time.sleeps
        assert 3.0 <= slept <= 3.0 + 0.25  # as asked, plus at most one back-off base of jitter
        assert (len(busy_fake.bodies), len(fake.bodies)) == (1, 1)  # the retry went elsewhere
        assert busy_fake.bodies == fake.bodies  # the same request: same temperature
        assert client.health() == {busy_url: True, url: True}
        stats = client.stats
        assert (stats.backpressure, stats.backpressure_retries, stats.answer_errors) == (1, 1, 0)
        assert stats.backpressure_wait_s == pytest.approx(slept)
        assert (stats.transport_errors, stats.unavailable) == (0, 0)
        assert_counters_add_up(stats)


async def test_429_without_retry_after_backs_off_exponentially(
    start_fake: StartFake, fake_time: FakeTime
):
    fake, url = await start_fake()
    fake.answer = answers(busy(), busy(), busy())
    async with client_for([url], fake_time) as client:
        assert (await client.complete(req("at last"))).content == "at last"
        assert len(fake.bodies) == 4 and {b["temperature"] for b in fake.bodies} == {0.0}
        for slept, ceiling in zip(fake_time.sleeps, (0.25, 0.5, 1.0), strict=True):
            assert 0 <= slept <= ceiling
        assert client.health() == {url: True}
        assert_counters_add_up(client.stats)


@pytest.mark.parametrize("status", [503, 502, 504])
async def test_503_and_proxy_errors_are_retried_and_mark_the_server(
    start_fake: StartFake, fake_time: FakeTime, status: int
):
    sick, sick_url = await start_fake()
    sick.answer = answers(busy(status, "2"))
    fake, url = await start_fake()
    async with client_for([sick_url, url], fake_time) as client:
        assert (await client.complete(req("elsewhere"))).content == "elsewhere"
        assert 2.0 <= fake_time.sleeps[0] <= 2.25
        assert client.health() == {sick_url: False, url: True}
        for _ in range(3):  # other callers avoid it until it proves well
            await client.complete(req())
        assert (len(sick.bodies), len(fake.bodies)) == (1, 4)
        assert (client.stats.backpressure, client.stats.answer_errors) == (1, 0)


async def test_retry_after_as_an_http_date(start_fake: StartFake, fake_time: FakeTime):
    fake, url = await start_fake()
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    fake.answer = answers(busy(503, when))
    async with client_for([url], fake_time) as client:
        await client.complete(req())
    assert 3.5 <= fake_time.sleeps[0] <= 5.25  # the date has a resolution of one second


async def test_a_long_retry_after_is_capped(start_fake: StartFake, fake_time: FakeTime):
    fake, url = await start_fake()
    fake.answer = answers(busy(429, "86400"))
    async with client_for([url], fake_time) as client:
        await client.complete(req())
    assert RETRY_AFTER_CAP_S <= fake_time.sleeps[0] <= RETRY_AFTER_CAP_S + 0.25


async def test_persistent_backpressure_ends_in_model_unavailable(
    start_fake: StartFake, fake_time: FakeTime
):
    fake, url = await start_fake()
    fake.answer = lambda body: busy(429, "2")()
    async with client_for([url], fake_time, transport_retry_budget_s=9.0) as client:
        with pytest.raises(ModelUnavailable) as info:
            await client.complete(req())
        cause = info.value.__cause__
        assert isinstance(cause, ServerBusy) and cause.status == 429
        assert sum(fake_time.sleeps) == pytest.approx(9.0)  # the last wait is cut to the budget
        stats = client.stats
        assert (stats.backpressure, stats.unavailable) == (len(fake.bodies), 1)
        assert stats.answer_errors == 0
        assert_counters_add_up(stats)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-3", 0.0),
        ("1e400", RETRY_AFTER_CAP_S),
        ("3600", RETRY_AFTER_CAP_S),
        ("Thu, 01 Jan 1970 00:00:10 GMT", 10.0),
        ("Thu, 01 Jan 1970 00:00:10", 10.0),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),
        ("Fri, 02 Jan 1970 00:00:00 GMT", RETRY_AFTER_CAP_S),
        ("Thu, 99 Foo 1970 00:00:00 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None):
    assert parse_retry_after(value, now_epoch_s=0.0) == expected


# --- routing and back-pressure ---------------------------------------------------------------


async def test_in_flight_bound_per_server_is_never_exceeded(
    start_fake: StartFake, fake_time: FakeTime
):
    fake, url = await start_fake()
    fake.gate.clear()
    async with client_for([url], fake_time, max_inflight_per_server=3) as client:
        tasks = [asyncio.create_task(client.complete(req(f"p{i}"))) for i in range(10)]
        await arrivals(fake, 3)
        assert client.stats.inflight == {url: 3}
        assert client.waiting == 7
        fake.gate.set()
        results = await asyncio.gather(*tasks)
    assert [r.content for r in results] == [f"p{i}" for i in range(10)]
    assert fake.max_concurrent == 3
    assert client.stats.inflight == {url: 0}


async def test_least_outstanding_spreads_load(start_fake: StartFake, fake_time: FakeTime):
    a, a_url = await start_fake()
    b, b_url = await start_fake()
    a.gate.clear()
    b.gate.clear()
    async with client_for([a_url, b_url], fake_time) as client:
        tasks = [asyncio.create_task(client.complete(req())) for _ in range(6)]
        await arrivals(a, 3)
        await arrivals(b, 3)
        assert client.stats.inflight == {a_url: 3, b_url: 3}
        a.gate.set()
        b.gate.set()
        await asyncio.gather(*tasks)


async def test_least_outstanding_prefers_the_idle_server(
    start_fake: StartFake, fake_time: FakeTime
):
    a, a_url = await start_fake()
    b, b_url = await start_fake()
    a.gate.clear()
    async with client_for([a_url, b_url], fake_time) as client:
        stuck = asyncio.create_task(client.complete(req("slow")))
        await arrivals(a, 1)
        for _ in range(3):  # round-robin would send the second of these to A
            await client.complete(req())
        assert (len(a.bodies), len(b.bodies)) == (1, 3)
        a.gate.set()
        await stuck


async def test_waiters_are_served_in_order_and_cancelled_ones_skipped():
    inflight: dict[str, int] = {}
    pool = ServerPool(["http://a"], 1, inflight)
    first = await pool.acquire()
    order: list[str] = []

    async def take(name: str) -> None:
        server = await pool.acquire()
        order.append(name)
        pool.release(server)

    w1 = asyncio.create_task(take("w1"))
    w2 = asyncio.create_task(take("w2"))
    w3 = asyncio.create_task(take("w3"))
    await asyncio.create_task(_noop())  # runs after w1..w3 took their first step (FIFO ready queue)
    assert pool.waiting == 3
    w2.cancel()
    pool.release(first)
    await asyncio.gather(w1, w3)
    assert order == ["w1", "w3"] and w2.cancelled()
    assert inflight == {"http://a": 0} and pool.waiting == 0


async def _noop() -> None:
    return None


# --- health ----------------------------------------------------------------------------------


async def test_probe_marks_a_down_server_and_routing_avoids_it(
    start_fake: StartFake, fake_time: FakeTime, refused_url: str
):
    sick, sick_url = await start_fake()
    sick.health_status = 503
    fake, url = await start_fake()
    async with client_for([sick_url, refused_url, url], fake_time) as client:
        assert await client.probe() == {sick_url: False, refused_url: False, url: True}
        assert client.health() == {sick_url: False, refused_url: False, url: True}
        for _ in range(4):
            await client.complete(req())
        assert (len(sick.bodies), len(fake.bodies)) == (0, 4)
        sick.health_status = 200
        assert (await client.probe())[sick_url] is True
        for _ in range(4):
            await client.complete(req())
        assert len(sick.bodies) == 2


async def test_background_prober_marks_servers(start_fake: StartFake, fake_time: FakeTime):
    sick, sick_url = await start_fake()
    sick.health_status = 503
    _, url = await start_fake()
    async with client_for([sick_url, url], fake_time, health_interval_s=0.01) as client:
        await asyncio.wait_for(sick.health_hits.get(), 5)
        await asyncio.wait_for(sick.health_hits.get(), 5)  # a second round: the first is applied
        assert client.health() == {sick_url: False, url: True}


async def test_all_unhealthy_still_tries(start_fake: StartFake, fake_time: FakeTime):
    a, a_url = await start_fake()
    b, b_url = await start_fake()
    a.health_status = b.health_status = 503
    async with client_for([a_url, b_url], fake_time) as client:
        fake_time.now = 1.0
        await client.probe()
        client._pool.servers[1].last_failure = 0.5  # B failed longest ago
        assert client.health() == {a_url: False, b_url: False}
        assert (await client.complete(req("anyway"))).content == "anyway"
        assert (len(a.bodies), len(b.bodies)) == (0, 1)
        assert client.health() == {a_url: False, b_url: True}  # a success marks healthy


async def test_models_come_from_the_first_healthy_server(
    start_fake: StartFake, fake_time: FakeTime, refused_url: str
):
    _, url = await start_fake()
    async with client_for([refused_url, url], fake_time) as client:
        models = await client.models()  # the refused server is tried, then skipped
        assert models["data"][0]["id"] == "ChatDOC/OCRFlux-3B"
        assert client.health() == {refused_url: False, url: True}
    async with client_for([refused_url], fake_time) as client:
        with pytest.raises(ModelUnavailable):
            await client.models()


# --- counters and lifecycle ------------------------------------------------------------------


async def test_counters_add_up(start_fake: StartFake, fake_time: FakeTime, refused_url: str):
    fake, url = await start_fake()
    async with client_for([refused_url, url], fake_time) as client:
        await client.complete(req("one"))  # refused, then retried on the fake
        await client.complete(req("two"))
        before = client.stats.snapshot()
        fake.answer = lambda body: web.Response(status=400, text="too long")
        with pytest.raises(ChatAnswerError):
            await client.complete(req())
    stats = client.stats
    assert (stats.requests_sent, stats.successes, stats.answer_errors) == (4, 2, 1)
    assert (stats.transport_errors, stats.transport_retries, stats.unavailable) == (1, 1, 0)
    assert stats.requests_sent == (
        stats.successes + stats.answer_errors + stats.transport_errors + stats.cancelled
    )
    assert (stats.prompt_tokens, stats.completion_tokens) == (22, 10)
    assert stats.latency_count == 2 and 0 <= stats.latency_max_s <= stats.latency_sum_s
    assert stats.inflight == {refused_url: 0, url: 0}
    assert (before.requests_sent, before.answer_errors) == (3, 0)  # the snapshot stayed put


async def test_close_fails_waiters_and_in_flight_requests(
    start_fake: StartFake, fake_time: FakeTime
):
    fake, url = await start_fake()
    fake.gate.clear()
    client = client_for([url], fake_time, max_inflight_per_server=1)
    running = asyncio.create_task(client.complete(req()))
    waiting = asyncio.create_task(client.complete(req()))
    await arrivals(fake, 1)
    await client.close()
    for task in (running, waiting):
        with pytest.raises(ModelUnavailable):
            await task
    with pytest.raises(RuntimeError):
        await client.complete(req())


# --- server URLs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vllm_url", "port", "expected"),
    [
        ("http://localhost", 8003, ["http://localhost:8003"]),
        ("http://localhost/", 8003, ["http://localhost:8003"]),
        ("http://localhost:9000/v1/", 8003, ["http://localhost:9000"]),
        ("localhost", 8004, ["http://localhost:8004"]),
        ("10.0.0.5:8010", 8003, ["http://10.0.0.5:8010"]),
        ("https://gpu.example/vllm/v1", 443, ["https://gpu.example/vllm"]),
        ("http://[::1]", 8003, ["http://[::1]:8003"]),
        (
            "http://a, http://b:9001/ ,,http://a",
            8003,
            ["http://a:8003", "http://b:9001"],
        ),
    ],
)
def test_server_urls(vllm_url: str, port: int, expected: list[str]):
    assert server_urls(vllm_url, port) == expected


@pytest.mark.parametrize("bad", ["", " , ", "ftp://host", "http://host?x=1"])
def test_server_urls_rejects_nonsense(bad: str):
    with pytest.raises(ValueError):
        server_urls(bad, 8003)


def test_constructor_rejects_bad_arguments():
    with pytest.raises(ValueError):
        VllmClient([])
    with pytest.raises(ValueError):
        VllmClient(["http://a:1", "http://a:1/"])
    with pytest.raises(ValueError):
        VllmClient(["http://a:1"], max_inflight_per_server=0)
    with pytest.raises(ValueError):
        VllmClient(["http://a:1"], retry_statuses={200})
