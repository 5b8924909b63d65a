"""Tests of the OCRFlux-3B test double itself: validation, answers, GPU simulation, control plane
and the process mode. Fault injection has its own module (test_ocrflux_faults.py)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import re
import urllib.request
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from ocrflux import prompts
from tests.fakes import truth, validation
from tests.fakes.chat_requests import chat_body, page_body, post_chat, sample_png
from tests.fakes.control import ControlError
from tests.fakes.gpu import Gpu, ServiceTime

MODEL = "ChatDOC/OCRFlux-3B"


# ----- the prompts the double knows ---------------------------------------------------------
def test_double_prompts_equal_production_prompts() -> None:
    assert truth.PAGE_PROMPT == prompts.PAGE_PROMPT
    assert truth.DETECT_HEADER == prompts.MERGE_DETECTION_HEADER
    template = truth.TABLE_MERGE_HEAD + "{table1}" + truth.TABLE_MERGE_MIDDLE + "{table2}\n"
    assert template == prompts.TABLE_MERGE_TEMPLATE


@pytest.mark.parametrize(
    ("previous", "following"),
    [
        (["a", "b"], ["c"]),
        ([], ["only next"]),
        (["only previous"], []),
        (
            ["", "line\nbreak", "1. looks numbered", "ends with newline\n"],
            ["<table><tr></tr></table>"],
        ),
    ],
)
def test_detection_prompt_parses_back(previous: list[str], following: list[str]) -> None:
    parsed = truth.recognise(prompts.merge_detection_prompt(previous, following))
    assert (parsed.task, parsed.previous, parsed.following) == (
        "detect",
        tuple(previous),
        tuple(following),
    )


def test_table_prompt_parses_back_and_near_misses_are_other() -> None:
    parsed = truth.recognise(prompts.table_merge_prompt("<table>1</table>", "<table>2</table>"))
    assert (parsed.task, parsed.table1, parsed.table2) == (
        "table_merge",
        "<table>1</table>",
        "<table>2</table>",
    )
    assert truth.recognise(prompts.PAGE_PROMPT).task == "page"
    assert truth.recognise(prompts.PAGE_PROMPT.rstrip("\n")).task == "other"
    broken = prompts.merge_detection_prompt(["a"], ["b"]).replace("0. b", "1. b")
    assert truth.recognise(broken).task == "other"


def test_default_table_merge_drops_a_repeated_header() -> None:
    header = "<tr><td>Name</td><td>Score</td></tr>"
    first = f"<table>{header}<tr><td>A</td><td>1</td></tr></table>"
    second = f"<table>{header}<tr><td>B</td><td>2</td></tr></table>"
    assert truth.default_table_merge(first, second) == (
        f"<table>{header}<tr><td>A</td><td>1</td></tr><tr><td>B</td><td>2</td></tr></table>"
    )
    plain = "<table><tr><td>C</td><td>3</td></tr></table>"
    assert truth.default_table_merge(first, plain).endswith(
        "<tr><td>A</td><td>1</td></tr><tr><td>C</td><td>3</td></tr></table>"
    )


# ----- validation, as vLLM would do it ------------------------------------------------------
async def test_unknown_model_is_a_vllm_404(ocrflux_server: Any, session: Any) -> None:
    status, body = await post_chat(session, ocrflux_server.url, {**page_body(), "model": "gpt-4o"})
    assert status == 404
    assert body == {
        "object": "error",
        "message": "The model `gpt-4o` does not exist.",
        "type": "NotFoundError",
        "param": None,
        "code": 404,
    }


def _image_part(body: dict[str, Any]) -> dict[str, Any]:
    return body["messages"][0]["content"][1]


def _http_url(body: dict[str, Any]) -> None:
    _image_part(body)["image_url"]["url"] = "https://example.com/page.png"


def _text_after_image(body: dict[str, Any]) -> None:
    body["messages"][0]["content"].reverse()


def _jpeg(body: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 40)).save(buffer, format="JPEG")
    _image_part(body)["image_url"]["url"] = (
        "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    )


@pytest.mark.parametrize(
    "spoil",
    [
        _http_url,
        _text_after_image,
        _jpeg,
        lambda body: _image_part(body)["image_url"].update(url="data:image/png;base64,@@@"),
        lambda body: _image_part(body)["image_url"].update(
            url="data:image/png;base64," + base64.b64encode(b"not an image").decode()
        ),
        lambda body: body.update(temperature=2.5),
        lambda body: body.update(temperature="0"),
        lambda body: body.update(max_tokens=0),
        lambda body: body.update(max_tokens=True),
        lambda body: body.update(messages=[]),
        lambda body: body["messages"].append({"role": "user", "content": "again"}),
        lambda body: body["messages"][0].update(role="system"),
        lambda body: body["messages"][0].update(content="a string"),
    ],
    ids=[
        "http-url",
        "text-after-image",
        "jpeg-as-png",
        "bad-base64",
        "not-an-image",
        "temperature-too-high",
        "temperature-string",
        "max-tokens-zero",
        "max-tokens-bool",
        "no-messages",
        "two-messages",
        "system-role",
        "string-content",
    ],
)
async def test_malformed_requests_are_vllm_400s(
    ocrflux_server: Any, session: Any, spoil: Any
) -> None:
    body = page_body()
    spoil(body)
    status, answer = await post_chat(session, ocrflux_server.url, body)
    assert status == 400
    assert answer["object"] == "error"
    assert (answer["type"], answer["code"]) == ("BadRequestError", 400)
    assert ocrflux_server.stats()["by_task"] == {"invalid": {"400": 1}}


async def test_a_body_that_is_not_json_is_a_400(ocrflux_server: Any, session: Any) -> None:
    async with session.post(f"{ocrflux_server.url}/v1/chat/completions", data=b"{nope") as response:
        assert response.status == 400
        assert (await response.json())["type"] == "BadRequestError"


# ----- answers ----------------------------------------------------------------------------
async def test_pages_are_recognised_by_pixels_not_png_bytes(
    ocrflux_server: Any, session: Any
) -> None:
    small, large = sample_png(compress_level=9), sample_png(compress_level=0)
    assert small != large
    key = ocrflux_server.register_page(small, "# Title\n\nBody", is_table=True)
    assert key == truth.image_key(large)
    status, body = await post_chat(session, ocrflux_server.url, page_body(large))
    assert status == 200
    assert json.loads(body["choices"][0]["message"]["content"]) == {
        "primary_language": "en",
        "is_rotation_valid": True,
        "rotation_correction": 0,
        "is_table": True,
        "is_diagram": False,
        "natural_text": "# Title\n\nBody",
    }


async def test_page_key_bytes_identifies_pages_by_their_png_bytes(
    ocrflux_server_factory: Any, session: Any
) -> None:
    server = ocrflux_server_factory(page_key="bytes")
    small, large = sample_png(compress_level=9), sample_png(compress_level=0)
    server.register_page(validation.payload_key(small), "Small encoding")
    answers = []
    for page in (small, large):
        status, body = await post_chat(session, server.url, page_body(page))
        assert status == 200
        answers.append(json.loads(body["choices"][0]["message"]["content"])["natural_text"])
    assert answers == ["Small encoding", f"Unregistered page {validation.payload_key(large)[:12]}"]
    assert server.stats()["page_key"] == "bytes"
    assert server.stats()["tokens"]["prompt"] > 2 * 4 * 6  # sizes read from the PNG header
    not_png = base64.b64encode(b"GIF89a" + bytes(40)).decode()
    body = chat_body(prompts.PAGE_PROMPT)
    body["messages"][0]["content"][1]["image_url"]["url"] = f"data:image/png;base64,{not_png}"
    status, _ = await post_chat(session, server.url, body)
    assert status == 400


async def test_completion_shape_and_usage(ocrflux_server: Any, session: Any) -> None:
    page = sample_png(size=(723, 1024))
    ocrflux_server.register_page_raw(page, "x" * 400)
    status, body = await post_chat(session, ocrflux_server.url, page_body(page))
    assert status == 200
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    assert body["id"] and isinstance(body["created"], int)
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "x" * 400,
        "tool_calls": [],
    }
    assert (body["choices"][0]["index"], body["choices"][0]["finish_reason"]) == (0, "stop")
    visual = 26 * 37  # Qwen2.5-VL: one token per 28x28 block of the 723x1024 page
    prompt_tokens = visual + len(prompts.PAGE_PROMPT) // 4
    assert body["usage"] == {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": 100,
        "total_tokens": prompt_tokens + 100,
    }
    assert ocrflux_server.stats()["tokens"] == {
        "prompt": prompt_tokens,
        "completion": 100,
        "total": prompt_tokens + 100,
    }


async def test_unregistered_page_gets_a_valid_deterministic_answer(
    ocrflux_server: Any, session: Any
) -> None:
    page = sample_png(color=(1, 2, 3))
    _, first = await post_chat(session, ocrflux_server.url, page_body(page))
    _, second = await post_chat(session, ocrflux_server.url, page_body(page))
    content = first["choices"][0]["message"]["content"]
    assert content == second["choices"][0]["message"]["content"]
    parsed = json.loads(content)
    assert set(parsed) == set(truth.PAGE_KEYS)
    assert parsed["natural_text"] == f"Unregistered page {truth.image_key(page)[:12]}"


async def test_registration_by_key_and_max_tokens_truncation(
    ocrflux_server: Any, session: Any
) -> None:
    page = sample_png(color=(9, 9, 9))
    ocrflux_server.register_page_raw(truth.image_key(page), "y" * 100)
    status, body = await post_chat(session, ocrflux_server.url, page_body(page, max_tokens=10))
    assert status == 200
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"]["content"] == "y" * 40
    assert body["usage"]["completion_tokens"] == 10
    [record] = ocrflux_server.requests()
    assert (record["temperature"], record["max_tokens"], record["finish_reason"]) == (
        0.0,
        10,
        "length",
    )


async def test_merge_detection_answers(ocrflux_server: Any, session: Any) -> None:
    previous, following = ["# Title", "A paragraph that goes"], ["on here.", "<table></table>"]
    ocrflux_server.register_merges(previous, following, [(1, 0), (0, 1)])
    _, body = await post_chat(
        session, ocrflux_server.url, chat_body(prompts.merge_detection_prompt(previous, following))
    )
    assert body["choices"][0]["message"]["content"] == "[(1, 0), (0, 1)]"
    _, body = await post_chat(
        session, ocrflux_server.url, chat_body(prompts.merge_detection_prompt(["other"], following))
    )
    assert body["choices"][0]["message"]["content"] == "[]"
    assert ocrflux_server.stats()["by_task"] == {"detect": {"200": 2}}
    # The request log says which pages each detection was about (benchmarks map it back).
    subjects = [record["subject"] for record in ocrflux_server.requests()]
    assert subjects == [
        f"{truth.text_key(previous)}/{truth.text_key(following)}",
        f"{truth.text_key(['other'])}/{truth.text_key(following)}",
    ]


async def test_table_merge_answers(ocrflux_server: Any, session: Any) -> None:
    first = "<table><tr><td>H</td></tr><tr><td>1</td></tr></table>"
    second = "<table><tr><td>H</td></tr><tr><td>2</td></tr></table>"
    ocrflux_server.register_table_merge(first, second, "<table>registered</table>")
    _, body = await post_chat(
        session, ocrflux_server.url, chat_body(prompts.table_merge_prompt(first, second))
    )
    assert body["choices"][0]["message"]["content"] == "<table>registered</table>"
    _, body = await post_chat(
        session, ocrflux_server.url, chat_body(prompts.table_merge_prompt(second, first))
    )
    assert body["choices"][0]["message"]["content"] == (
        "<table><tr><td>H</td></tr><tr><td>2</td></tr><tr><td>1</td></tr></table>"
    )


async def test_an_unknown_prompt_gets_a_polite_answer(ocrflux_server: Any, session: Any) -> None:
    status, body = await post_chat(
        session, ocrflux_server.url, chat_body("What is this?", sample_png())
    )
    assert status == 200
    assert body["choices"][0]["message"]["content"] == truth.GENERIC_ANSWER
    stats = ocrflux_server.stats()
    assert stats["by_task"] == {"other": {"200": 1}}
    assert stats["unrecognized_prompts"] == ["What is this?"]


# ----- models and health --------------------------------------------------------------------
async def test_models_and_health(ocrflux_server: Any, session: Any) -> None:
    async with session.get(f"{ocrflux_server.url}/v1/models") as response:
        models = await response.json()
    assert models["object"] == "list"
    [entry] = models["data"]
    assert (entry["id"], entry["object"], entry["owned_by"], entry["max_model_len"]) == (
        MODEL,
        "model",
        "ocrflux-test-double",
        16384,
    )
    async with session.get(f"{ocrflux_server.url}/health") as response:
        assert (response.status, await response.read()) == (200, b"")
    await ocrflux_server.aio.set_health("unavailable")
    async with session.get(f"{ocrflux_server.url}/health") as response:
        assert response.status == 503
    await ocrflux_server.aio.set_health("down")
    with pytest.raises(aiohttp.ClientConnectionError):
        await session.get(f"{ocrflux_server.url}/health")
    with pytest.raises(aiohttp.ClientConnectionError):
        await post_chat(session, ocrflux_server.url, page_body())
    await ocrflux_server.aio.set_health("ok")
    assert (await post_chat(session, ocrflux_server.url, page_body()))[0] == 200
    assert ocrflux_server.stats()["by_status"] == {"dropped": 1, "200": 1}


# ----- the simulated GPU --------------------------------------------------------------------
async def test_capacity_queues_the_rest_fifo(ocrflux_server_factory: Any, session: Any) -> None:
    service = 0.1
    server = ocrflux_server_factory(capacity=2, service_time=service)
    await server.aio.configure(paused=True)  # let all six queue before the first is served
    requests = [
        asyncio.ensure_future(
            post_chat(session, server.url, page_body(sample_png(color=(i, 0, 0))))
        )
        for i in range(6)
    ]
    queued = await server.aio.wait_for(queued=6)
    assert (queued["in_flight"], queued["max_in_flight"]) == (0, 0)
    await server.aio.configure(paused=False)
    assert [status for status, _ in await asyncio.gather(*requests)] == [200] * 6
    stats = server.stats()
    assert (stats["max_in_flight"], stats["max_queued"], stats["served"]) == (2, 6, 6)
    assert (stats["in_flight"], stats["queued"]) == (0, 0)
    assert stats["busy_slot_seconds"] >= 6 * service * 0.99
    assert stats["ideal_throughput"] == pytest.approx(2 / service)
    records = sorted(server.requests(), key=lambda record: record["queued_at"])
    starts = [record["started_at"] for record in records]
    assert starts == sorted(starts)  # FIFO
    # Six requests on two slots: three rounds of service.
    first = starts[0]
    assert max(record["finished_at"] for record in records) - first >= 3 * service * 0.99
    assert starts[2] - first >= service * 0.99 and starts[4] - first >= 2 * service * 0.99


async def test_a_saturated_gpu_is_all_busy(ocrflux_server_factory: Any, session: Any) -> None:
    server = ocrflux_server_factory(capacity=2, service_time=0.05)
    await asyncio.gather(*(post_chat(session, server.url, page_body()) for _ in range(8)))
    stats = server.stats()
    assert stats["max_in_flight"] == 2
    assert 0.0 < stats["all_busy_share"] <= 1.0 and 0.0 < stats["utilisation"] <= 1.0


async def test_queue_is_observable_while_it_is_full(
    ocrflux_server_factory: Any, session: Any
) -> None:
    server = ocrflux_server_factory(capacity=2, stall_seconds=60)
    await server.aio.add_fault("stall")
    requests = [
        asyncio.ensure_future(
            post_chat(session, server.url, page_body(sample_png(color=(i, 1, 1))))
        )
        for i in range(5)
    ]
    stats = await server.aio.wait_for(in_flight=2, queued=3)
    assert (stats["in_flight"], stats["queued"], stats["max_in_flight"]) == (2, 3, 2)
    for request in requests:
        request.cancel()
    await asyncio.gather(*requests, return_exceptions=True)
    stats = await server.aio.wait_for(completed=5)
    assert (stats["in_flight"], stats["queued"]) == (0, 0)
    assert stats["by_status"] == {"cancelled": 5}


async def test_gpu_occupancy_is_time_weighted() -> None:
    now = [0.0]
    gpu = Gpu(2, ServiceTime(0.0), clock=lambda: now[0])
    async with AsyncExitStack() as both:
        await both.enter_async_context(gpu.slot())
        now[0] = 1.0
        async with AsyncExitStack() as first:
            await first.enter_async_context(gpu.slot())
            now[0] = 3.0
        now[0] = 4.0
    stats = gpu.stats()
    assert (stats["busy_slot_seconds"], stats["all_busy_seconds"], stats["window_seconds"]) == (
        6.0,
        2.0,
        4.0,
    )
    assert (stats["all_busy_share"], stats["utilisation"]) == (0.5, 0.75)


def test_service_time_is_seeded() -> None:
    draws = [ServiceTime(mean=0.5, jitter=0.2, seed=7).draw() for _ in range(3)]
    assert len(set(draws)) == 1
    series = ServiceTime(mean=0.5, jitter=0.2, seed=7)
    values = [series.draw() for _ in range(2000)]
    assert all(0.4 <= value <= 0.6 for value in values)
    assert sum(values) / len(values) == pytest.approx(0.5, abs=0.01)
    assert ServiceTime.parse(0.25).draw() == 0.25


# ----- control plane over HTTP --------------------------------------------------------------
async def test_control_plane_over_plain_http(ocrflux_server: Any, session: Any) -> None:
    url, page = ocrflux_server.url, sample_png(color=(5, 6, 7))
    async with session.post(
        f"{url}/_test/pages",
        json={"png_base64": base64.b64encode(page).decode(), "natural_text": None},
    ) as response:
        assert response.status == 200
        assert (await response.json())["key"] == truth.image_key(page)
    async with session.post(f"{url}/_test/pages", json={"natural_text": "x"}) as response:
        assert response.status == 400 and "error" in await response.json()
    _, body = await post_chat(session, url, page_body(page))
    assert json.loads(body["choices"][0]["message"]["content"])["natural_text"] is None
    async with session.post(f"{url}/_test/faults", json={"kind": "http_503", "count": 1}) as r:
        rule_id = (await r.json())["id"]
    async with session.get(f"{url}/_test/faults") as response:
        assert [rule["id"] for rule in (await response.json())["rules"]] == [rule_id]
    async with session.post(f"{url}/_test/wait", json={"completed": 99, "timeout": 0.05}) as r:
        assert r.status == 408
    async with session.post(f"{url}/_test/config", json={"capacity": 3}) as response:
        assert (await response.json())["capacity"] == 3
    async with session.post(f"{url}/_test/reset", json={"scope": ["stats"]}) as response:
        assert response.status == 200
    async with session.get(f"{url}/_test/stats") as response:
        stats = await response.json()
    assert (stats["requests_total"], stats["registered"]["pages"], stats["capacity"]) == (0, 1, 3)
    async with session.post(f"{url}/_test/reset") as response:
        assert response.status == 200
    assert ocrflux_server.faults() == [] and ocrflux_server.stats()["registered"]["pages"] == 0


def test_sync_control_client_reports_refusals(ocrflux_server: Any) -> None:
    with pytest.raises(ControlError) as refused:
        ocrflux_server.add_fault("meteor_strike")
    assert refused.value.status == 400
    with pytest.raises(TimeoutError):
        ocrflux_server.wait_for(requests_total=1, timeout=0.05)
    with pytest.raises(ControlError):
        ocrflux_server.wait_for(no_such_stat=1, timeout=0.05)
    rule = ocrflux_server.add_fault("drop", count=2, task="page")
    assert ocrflux_server.remove_fault(rule) is True
    assert ocrflux_server.remove_fault(rule) is False


# ----- process mode -------------------------------------------------------------------------
def test_subprocess_serves_and_stops_on_sigterm(
    ocrflux_subprocess_factory: Any, tmp_path: Any
) -> None:
    log_path = tmp_path / "double.log"
    with log_path.open("wb") as log:
        server = ocrflux_subprocess_factory(capacity=3, port_file=tmp_path / "port", stderr=log)
    assert server.pid != os.getpid()
    assert server.url.endswith(":" + (tmp_path / "port").read_text().strip())
    page = sample_png(color=(40, 50, 60))
    server.register_page(page, "from another process")
    request = urllib.request.Request(
        server.chat_url,
        data=json.dumps(page_body(page)).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        content = json.loads(response.read())["choices"][0]["message"]["content"]
    assert json.loads(content)["natural_text"] == "from another process"
    assert server.stats()["capacity"] == 3
    assert server.stop() == 0
    assert "TEST DOUBLE" in log_path.read_text()


async def test_stalled_requests_end_when_the_process_stops(
    ocrflux_subprocess: Any, session: Any
) -> None:
    await ocrflux_subprocess.aio.add_fault("stall")
    stalled = asyncio.ensure_future(post_chat(session, ocrflux_subprocess.url, page_body()))
    await ocrflux_subprocess.aio.wait_for(in_flight=1)
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, ocrflux_subprocess.stop) == 0
    with pytest.raises(aiohttp.ClientConnectionError):
        await stalled


def test_no_production_code_imports_the_double() -> None:
    root = Path(__file__).resolve().parents[2]
    offenders = [
        str(path.relative_to(root))
        for package in ("ocrflux", "schemas", "streams", "connectors", "deploy")
        for path in (root / package).rglob("*.py")
        if re.search(r"^\s*(from|import)\s+tests\b", path.read_text(errors="replace"), re.M)
    ]
    assert offenders == []
