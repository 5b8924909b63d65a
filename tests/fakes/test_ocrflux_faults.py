"""Fault injection in the OCRFlux-3B test double, each kind seen from a plain aiohttp client."""

from __future__ import annotations

import ast
import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from ocrflux import prompts
from tests.fakes import truth
from tests.fakes.chat_requests import chat_body, page_body, post_chat, sample_png
from tests.fakes.control import ControlError
from tests.fakes.faults import FaultRule
from tests.fakes.ocrflux_server import parse_args as double_args

PREVIOUS, FOLLOWING = ["A paragraph that", "x"], ["continues here."]
DETECT = prompts.merge_detection_prompt(PREVIOUS, FOLLOWING)
TABLE = prompts.table_merge_prompt(
    "<table><tr><td>1</td></tr></table>", "<table><tr><td>2</td></tr></table>"
)


def content_of(body: dict[str, Any]) -> str:
    return body["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    ("kind", "status", "error_type"),
    [
        ("http_500", 500, "InternalServerError"),
        ("http_503", 503, "ServiceUnavailableError"),
    ],
)
async def test_http_errors_for_the_next_request(
    ocrflux_server: Any, session: Any, kind: str, status: int, error_type: str
) -> None:
    await ocrflux_server.aio.add_fault(kind, count=1)
    page = page_body()
    answered, body = await post_chat(session, ocrflux_server.url, page)
    assert (answered, body["object"], body["type"], body["code"]) == (
        status,
        "error",
        error_type,
        status,
    )
    assert (await post_chat(session, ocrflux_server.url, page))[0] == 200
    stats = ocrflux_server.stats()
    assert stats["by_task"]["page"] == {str(status): 1, "200": 1}
    assert stats["faults_injected"] == {kind: 1}


async def test_drop_closes_the_connection_without_an_answer(
    ocrflux_server: Any, session: Any
) -> None:
    await ocrflux_server.aio.add_fault("drop", count=1)
    with pytest.raises(aiohttp.ClientConnectionError):
        await post_chat(session, ocrflux_server.url, page_body())
    assert (await post_chat(session, ocrflux_server.url, page_body()))[0] == 200
    assert ocrflux_server.stats()["by_status"] == {"dropped": 1, "200": 1}


async def test_stall_outlasts_the_client_and_frees_its_slot(
    ocrflux_server: Any, session: Any
) -> None:
    await ocrflux_server.aio.add_fault("stall", count=1)
    with pytest.raises(asyncio.TimeoutError):
        async with session.post(
            f"{ocrflux_server.url}/v1/chat/completions",
            json=page_body(),
            timeout=aiohttp.ClientTimeout(total=0.3),
        ) as response:
            await response.read()
    stats = await ocrflux_server.aio.wait_for(completed=1)
    assert (stats["by_status"], stats["in_flight"]) == ({"cancelled": 1}, 0)


def test_stall_ends_promptly_when_the_server_stops(ocrflux_server_factory: Any) -> None:
    server = ocrflux_server_factory()
    server.add_fault("stall")

    async def stalled_request() -> object:
        async with aiohttp.ClientSession() as client:
            task = asyncio.ensure_future(post_chat(client, server.url, page_body()))
            await server.aio.wait_for(in_flight=1)
            started = time.monotonic()
            await asyncio.get_running_loop().run_in_executor(None, server.stop)
            assert time.monotonic() - started < 5
            return (await asyncio.gather(task, return_exceptions=True))[0]

    assert isinstance(asyncio.run(stalled_request()), aiohttp.ClientConnectionError)


async def test_stall_that_runs_out_is_a_length_answer(
    ocrflux_server_factory: Any, session: Any
) -> None:
    server = ocrflux_server_factory(stall_seconds=0.05)
    await server.aio.add_fault("stall", count=1)
    status, body = await post_chat(session, server.url, page_body())
    assert (status, body["choices"][0]["finish_reason"]) == (200, "length")


async def test_page_content_faults(ocrflux_server: Any, session: Any) -> None:
    page = sample_png()
    ocrflux_server.register_page(page, "True text of the page.")
    for kind in ("invalid_json", "wrong_keys", "length"):
        await ocrflux_server.aio.add_fault(kind, count=1)
    request = page_body(page)
    _, invalid = await post_chat(session, ocrflux_server.url, request)
    with pytest.raises(json.JSONDecodeError):
        json.loads(content_of(invalid))
    _, wrong = await post_chat(session, ocrflux_server.url, request)
    assert set(json.loads(content_of(wrong))) == set(truth.PAGE_KEYS) - {"is_diagram"}
    _, cut = await post_chat(session, ocrflux_server.url, request)
    assert cut["choices"][0]["finish_reason"] == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(content_of(cut))
    _, fine = await post_chat(session, ocrflux_server.url, request)
    assert json.loads(content_of(fine))["natural_text"] == "True text of the page."
    assert ocrflux_server.stats()["faults_injected"] == {
        "invalid_json": 1,
        "wrong_keys": 1,
        "length": 1,
    }


async def test_detection_faults_touch_only_detection(ocrflux_server: Any, session: Any) -> None:
    ocrflux_server.register_merges(PREVIOUS, FOLLOWING, [(0, 0)])
    await ocrflux_server.aio.add_fault("bad_pairs", count=1)
    await ocrflux_server.aio.add_fault("garbage_pairs", count=1)
    page_status, page = await post_chat(session, ocrflux_server.url, page_body())
    assert page_status == 200 and json.loads(content_of(page))
    _, bad = await post_chat(session, ocrflux_server.url, chat_body(DETECT))
    pairs = ast.literal_eval(content_of(bad))
    assert any(i >= len(PREVIOUS) or j >= len(FOLLOWING) for i, j in pairs)
    _, garbage = await post_chat(session, ocrflux_server.url, chat_body(DETECT))
    assert not content_of(garbage).startswith("[")
    _, fine = await post_chat(session, ocrflux_server.url, chat_body(DETECT))
    assert content_of(fine) == "[(0, 0)]"


async def test_table_faults(ocrflux_server: Any, session: Any) -> None:
    await ocrflux_server.aio.add_fault("bad_table", count=1)
    await ocrflux_server.aio.add_fault("length", task="table_merge", count=1)
    _, bad = await post_chat(session, ocrflux_server.url, chat_body(TABLE))
    assert not content_of(bad).startswith("<table>")
    _, cut = await post_chat(session, ocrflux_server.url, chat_body(TABLE))
    assert cut["choices"][0]["finish_reason"] == "length"
    assert not content_of(cut).endswith("</table>")


async def test_a_page_can_always_fail(ocrflux_server: Any, session: Any) -> None:
    good, doomed = sample_png(color=(1, 1, 1)), sample_png(color=(2, 2, 2))
    key = ocrflux_server.register_page(doomed, "never seen")
    await ocrflux_server.aio.add_fault("invalid_json", pages=[key])
    for _ in range(3):
        _, body = await post_chat(session, ocrflux_server.url, page_body(doomed))
        with pytest.raises(json.JSONDecodeError):
            json.loads(content_of(body))
        _, body = await post_chat(session, ocrflux_server.url, page_body(good))
        assert json.loads(content_of(body))
    [rule] = ocrflux_server.faults()
    assert (rule["pages"], rule["fired"], rule["count"]) == ([key], 3, None)


async def test_task_restriction(ocrflux_server: Any, session: Any) -> None:
    await ocrflux_server.aio.add_fault("http_500", task="detect")
    assert (await post_chat(session, ocrflux_server.url, page_body()))[0] == 200
    assert (await post_chat(session, ocrflux_server.url, chat_body(DETECT)))[0] == 500
    assert (await post_chat(session, ocrflux_server.url, chat_body(TABLE)))[0] == 200


async def test_rate_is_seeded_and_repeatable(ocrflux_server: Any, session: Any) -> None:
    async def pattern() -> list[int]:
        await ocrflux_server.aio.reset("faults")
        await ocrflux_server.aio.add_fault("http_500", rate=0.3, seed=11)
        request = page_body()
        return [(await post_chat(session, ocrflux_server.url, request))[0] for _ in range(40)]

    first, second = await pattern(), await pattern()
    assert first == second
    assert 3 <= first.count(500) <= 25 and set(first) == {200, 500}


async def test_clearing_faults(ocrflux_server: Any, session: Any) -> None:
    await ocrflux_server.aio.add_fault("http_500")
    assert (await post_chat(session, ocrflux_server.url, page_body()))[0] == 500
    await ocrflux_server.aio.clear_faults()
    assert await ocrflux_server.aio.faults() == []
    assert (await post_chat(session, ocrflux_server.url, page_body()))[0] == 200


# ----- back-pressure, broken answers, outages -------------------------------------------------
@pytest.mark.parametrize(
    ("retry_after", "header"),
    [
        (None, "1"),
        (2.5, "2.5"),
        (3, "3"),
        ("Wed, 21 Oct 2037 07:28:00 GMT", "Wed, 21 Oct 2037 07:28:00 GMT"),
        ("", None),
    ],
)
async def test_http_429_carries_retry_after(
    ocrflux_server: Any, session: Any, retry_after: float | str | None, header: str | None
) -> None:
    await ocrflux_server.aio.add_fault("http_429", count=1, retry_after=retry_after)
    async with session.post(ocrflux_server.chat_url, json=page_body()) as response:
        body = await response.json()
        assert response.headers.get("Retry-After") == header
    assert (response.status, body["type"], body["code"]) == (429, "TooManyRequestsError", 429)
    assert (await post_chat(session, ocrflux_server.url, page_body()))[0] == 200
    assert ocrflux_server.stats()["faults_injected"] == {"http_429": 1}


async def test_http_503_sends_retry_after_only_when_asked(
    ocrflux_server: Any, session: Any
) -> None:
    await ocrflux_server.aio.add_fault("http_503", count=1)
    await ocrflux_server.aio.add_fault("http_503", count=1, retry_after=7)
    headers = []
    for _ in range(2):
        async with session.post(ocrflux_server.chat_url, json=page_body()) as response:
            assert response.status == 503
            headers.append(response.headers.get("Retry-After"))
    assert headers == [None, "7"]


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "http_500", "retry_after": 1},
        {"kind": "http_429", "retry_after": -1},
        {"kind": "http_429", "retry_after": [1]},
    ],
)
async def test_bad_retry_after_is_refused(ocrflux_server: Any, fault: dict[str, Any]) -> None:
    with pytest.raises(ControlError) as refused:
        await ocrflux_server.aio.add_fault(**fault)
    assert refused.value.status == 400 and "retry_after" in str(refused.value)


async def test_drop_mid_body_sends_headers_and_half_a_body(
    ocrflux_server: Any, session: Any
) -> None:
    await ocrflux_server.aio.add_fault("drop_mid_body", count=1)
    async with session.post(ocrflux_server.chat_url, json=page_body()) as response:
        assert response.status == 200 and response.content_length is not None
        with pytest.raises(aiohttp.ClientPayloadError):
            await response.read()
    status, body = await post_chat(session, ocrflux_server.url, page_body())
    assert status == 200 and json.loads(content_of(body))
    stats = await ocrflux_server.aio.wait_for(completed=2)
    assert (stats["by_status"], stats["faults_injected"]) == (
        {"dropped": 1, "200": 1},
        {"drop_mid_body": 1},
    )
    assert (stats["in_flight"], stats["finish_reasons"]) == (0, {"stop": 1})


async def test_non_page_json_is_valid_json_but_no_page(ocrflux_server: Any, session: Any) -> None:
    page = sample_png()
    ocrflux_server.register_page(page, "True text of the page.")
    await ocrflux_server.aio.add_fault("non_page_json")  # every page request
    _, body = await post_chat(session, ocrflux_server.url, page_body(page))
    answer = json.loads(content_of(body))
    assert isinstance(answer, list) and answer[0]["natural_text"] == "True text of the page."
    assert body["choices"][0]["finish_reason"] == "stop"
    ocrflux_server.register_merges(PREVIOUS, FOLLOWING, [(0, 0)])
    _, detect = await post_chat(session, ocrflux_server.url, chat_body(DETECT))
    assert content_of(detect) == "[(0, 0)]"  # a page-only kind never fires on detection


async def test_huge_answer_is_five_megabytes_and_complete(
    ocrflux_server: Any, session: Any
) -> None:
    page = sample_png()
    ocrflux_server.register_page(page, "True text of the page.")
    ocrflux_server.register_merges(PREVIOUS, FOLLOWING, [(0, 0)])
    await ocrflux_server.aio.add_fault("huge_answer", count=2)
    _, body = await post_chat(session, ocrflux_server.url, page_body(page, max_tokens=8192))
    answer = json.loads(content_of(body))
    assert set(answer) == set(truth.PAGE_KEYS)
    assert answer["natural_text"].startswith("True text of the page.\n\n")
    assert len(answer["natural_text"]) >= 5 * 1024 * 1024
    assert body["choices"][0]["finish_reason"] == "stop"
    _, detect = await post_chat(session, ocrflux_server.url, chat_body(DETECT, max_tokens=100))
    assert content_of(detect).startswith("[(0, 0)]") and len(content_of(detect)) >= 5 * 1024**2
    assert detect["choices"][0]["finish_reason"] == "stop"


async def test_outage_keeps_the_port_but_serves_no_model(ocrflux_server: Any, session: Any) -> None:
    await ocrflux_server.aio.set_health("outage")
    async with session.get(f"{ocrflux_server.url}/health") as response:
        assert response.status == 503
    with pytest.raises(aiohttp.ClientConnectionError):
        await post_chat(session, ocrflux_server.url, page_body())
    with pytest.raises(aiohttp.ClientConnectionError):
        await session.get(f"{ocrflux_server.url}/v1/models")
    assert (await ocrflux_server.aio.stats())["health"] == "outage"  # the control plane answers
    await ocrflux_server.aio.set_health("ok")
    async with session.get(f"{ocrflux_server.url}/health") as response:
        assert response.status == 200
    assert (await post_chat(session, ocrflux_server.url, page_body()))[0] == 200
    await ocrflux_server.aio.set_health("outage")
    await ocrflux_server.aio.reset("health")
    assert (await post_chat(session, ocrflux_server.url, page_body()))[0] == 200


def test_fault_specs_of_the_command_line() -> None:
    rule = FaultRule.from_spec("http_429:count=3,retry_after=2.5,task=page,pages=a+b,seed=4")
    assert (rule.kind, rule.count, rule.retry_after, rule.task, rule.seed) == (
        "http_429",
        3,
        2.5,
        "page",
        4,
    )
    assert rule.pages == frozenset({"a", "b"})
    assert FaultRule.from_spec("drop").kind == "drop"
    args = double_args(["--fault", "stall:rate=0.5", "--fault", "http_429"])
    assert [(r.kind, r.rate) for r in args.faults] == [("stall", 0.5), ("http_429", None)]
    for bad in ("meteor", "http_429:count", "drop:colour=red"):
        with pytest.raises(SystemExit):
            double_args(["--fault", bad])


async def test_a_process_starts_with_its_faults(
    ocrflux_subprocess_factory: Any, session: Any
) -> None:
    double = ocrflux_subprocess_factory(faults=["http_429:count=1,retry_after=2"])
    async with session.post(double.chat_url, json=page_body()) as response:
        assert (response.status, response.headers.get("Retry-After")) == (429, "2")
    assert (await post_chat(session, double.url, page_body()))[0] == 200
