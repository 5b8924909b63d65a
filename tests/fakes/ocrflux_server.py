"""TEST DOUBLE for the OCRFlux-3B model server: an OpenAI-compatible (vLLM-shaped) HTTP server
that answers like ChatDOC/OCRFlux-3B without any model. It is not a model and must never be
imported by production code; tests, benchmarks and demos talk to it over the network.

What it does (see /work/shared/spec/ocrflux-protocol.md for the model it stands in for):

- `POST /v1/chat/completions` validates a request as vLLM would (validation.py), recognises the
  task from the prompt (truth.py), serves it on a simulated GPU with `capacity` FIFO slots and a
  service time (gpu.py), applies any injected fault (faults.py) and answers in the OpenAI
  `chat.completion` shape with the registered truth or a deterministic default.
- `GET /v1/models`, `GET /health` as vLLM serves them. The health mode (control plane) can take
  the model away while the process keeps its port: `outage` makes `/health` answer 503 and
  closes every model request's connection until cleared (`set_health("ok")` or a reset);
  `down` closes `/health` too; `unavailable` only makes `/health` answer 503. Stopping the
  process (fixtures.py) is the real thing.
- Pages are identified by their pixels (`page_key="pixels"`, the default: any PNG encoding of
  the same page matches what a test registered). `page_key="bytes"` (`--page-key bytes`)
  identifies them by the SHA-256 of the PNG bytes and reads the size from the PNG header
  without decoding it: benchmarks use it so that the double, sharing the machine's cores,
  does not take the CPU of the pipeline it measures (see validation.inspect_png_header).
- A control plane under `/_test/` (control_api.py; client in control.py).

Run it as a process: `python -m tests.fakes.ocrflux_server --port 0 --capacity 8
--service-time 0.05 [--port-file PATH] [--fault KIND[:FIELD=VALUE,...]]...`; it prints its base
URL and stops cleanly on SIGTERM. `--fault` adds a fault rule at start (faults.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.control_api import RESET_SCOPES, add_control_routes
from tests.fakes.faults import TRANSPORT_KINDS, FaultPlan, FaultRule, corrupt
from tests.fakes.gpu import Gpu, ServiceTime
from tests.fakes.truth import Task, TruthRegistry, recognise, subject
from tests.fakes.validation import (
    ApiError,
    ChatCall,
    completion_tokens,
    inspect_image,
    inspect_png_header,
    parse_chat,
    prompt_tokens,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "ChatDOC/OCRFlux-3B"
OWNER = "ocrflux-test-double"
MAX_MODEL_LEN = 16384  # what the deployment serves with (`--max-model-len 16384`)
# A 1024 px page PNG can pass 1 MB once base64-encoded (aiohttp's default limit); real pages
# with photos reach a few MB.
MAX_BODY_BYTES = 64 * 1024 * 1024
# "Well past any client timeout": a stalled request ends sooner only if the client leaves or the
# server stops.
DEFAULT_STALL_SECONDS = 3600.0
# After this, requests still running at shutdown are cancelled.
SHUTDOWN_TIMEOUT_S = 2.0
REQUEST_LOG_LIMIT = 10_000
UNRECOGNISED_SAMPLES = 5
HTTP_FAULTS = {"http_429": 429, "http_500": 500, "http_503": 503}
# Health modes in which the model endpoints close the connection without an answer.
NO_MODEL = frozenset({"down", "outage"})
PAGE_KEYS = ("pixels", "bytes")


@dataclass(slots=True)
class DoubleConfig:
    model: str = DEFAULT_MODEL
    capacity: int = 8
    service_time: ServiceTime = field(default_factory=ServiceTime)
    stall_seconds: float = DEFAULT_STALL_SECONDS
    page_key: str = "pixels"  # or "bytes": see the module docstring
    faults: tuple[FaultRule, ...] = ()  # rules in effect from the start

    def __post_init__(self) -> None:
        if self.page_key not in PAGE_KEYS:
            raise ValueError(f"page_key must be one of {PAGE_KEYS}, got {self.page_key!r}")


class OcrfluxDouble:
    """The double's state and its model endpoints. All of it lives on the server's event loop."""

    def __init__(self, config: DoubleConfig) -> None:
        self.model = config.model
        self.stall_seconds = config.stall_seconds
        self.page_key = config.page_key
        self.truth = TruthRegistry()
        self.faults = FaultPlan()
        for rule in config.faults:
            self.faults.add(rule)
        self.gpu = Gpu(config.capacity, config.service_time)
        self.gpu.on_change = self.notify
        self.health = "ok"
        self.stopping = asyncio.Event()
        self._changed = asyncio.Event()
        self._clock = time.monotonic
        self._epoch = self._clock()
        self._epoch_unix = time.time()  # the request log's times are seconds after this
        self._reset_counters()

    # ----- bookkeeping -------------------------------------------------------------------
    def _reset_counters(self) -> None:
        self.arrived = 0
        self.completed = 0
        self.by_task: dict[str, Counter[str]] = {}
        self.by_status: Counter[str] = Counter()
        self.faults_injected: Counter[str] = Counter()
        self.finish_reasons: Counter[str] = Counter()
        self.tokens: Counter[str] = Counter()
        self.health_probes = 0
        self.unrecognised: list[str] = []
        self.request_log: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_LIMIT)

    def reset(self, scopes: tuple[str, ...] = RESET_SCOPES) -> None:
        if "truth" in scopes:
            self.truth.clear()
        if "faults" in scopes:
            self.faults.clear()
        if "health" in scopes:
            self.health = "ok"
        if "stats" in scopes:
            self._reset_counters()
            self.gpu.reset_stats()
        self.notify()

    def notify(self) -> None:
        """Wake every `wait_for` (state changed)."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, minimums: dict[str, int], timeout: float) -> bool:
        """Wait until every named numeric stat is at least its minimum; False on timeout."""
        deadline = self._clock() + timeout
        while not all(self.stats().get(name, 0) >= value for name, value in minimums.items()):
            remaining = deadline - self._clock()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return False
        return True

    def stats(self) -> dict[str, Any]:
        return {
            "test_double": True,
            "model": self.model,
            "requests_total": self.arrived,
            "completed": self.completed,
            "by_task": {task: dict(counts) for task, counts in self.by_task.items()},
            "by_status": dict(self.by_status),
            "faults_injected": dict(self.faults_injected),
            "finish_reasons": dict(self.finish_reasons),
            "tokens": {
                "prompt": self.tokens["prompt"],
                "completion": self.tokens["completion"],
                "total": self.tokens["prompt"] + self.tokens["completion"],
            },
            "health": self.health,
            "health_probes": self.health_probes,
            "unrecognized_prompts": list(self.unrecognised),
            "registered": self.truth.counts(),
            "stall_seconds": self.stall_seconds,
            "page_key": self.page_key,
            "started_unix": self._epoch_unix,
            **self.gpu.stats(),
        }

    def _since_start(self) -> float:
        return self._clock() - self._epoch

    def _finish(self, record: dict[str, Any]) -> None:
        record["finished_at"] = self._since_start()
        status = str(record["status"] or "cancelled")
        record["status"] = status
        self.completed += 1
        self.by_task.setdefault(record["task"], Counter())[status] += 1
        self.by_status[status] += 1
        if record["fault"]:
            self.faults_injected[record["fault"]] += 1
        if record["finish_reason"]:
            self.finish_reasons[record["finish_reason"]] += 1
        self.tokens["prompt"] += record["prompt_tokens"]
        self.tokens["completion"] += record["completion_tokens"]
        self.request_log.append(record)
        self.notify()

    # ----- model endpoints ---------------------------------------------------------------
    async def chat_completions(self, request: web.Request) -> web.StreamResponse:
        self.arrived += 1
        record: dict[str, Any] = {
            "seq": self.arrived,
            "task": "unknown",
            "page": None,
            "subject": None,
            "temperature": None,
            "max_tokens": None,
            "status": None,
            "fault": None,
            "finish_reason": None,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "arrived_at": self._since_start(),
            "queued_at": None,
            "started_at": None,
            "finished_at": None,
            "queued_seconds": 0.0,
            "service_seconds": 0.0,
        }
        self.notify()
        try:
            return await self._chat(request, record)
        except ApiError as exc:
            record["status"] = str(exc.status)
            return web.json_response(exc.body(), status=exc.status, headers=exc.headers)
        finally:
            self._finish(record)

    async def _chat(self, request: web.Request, record: dict[str, Any]) -> web.StreamResponse:
        if self.health in NO_MODEL:  # task "unknown": a server without a model reads nothing
            record["status"] = "dropped"
            return await drop_connection(request)
        record["task"] = "invalid"  # until the request is valid
        try:
            body = json.loads(await request.read())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"The request body is not valid JSON: {exc}") from exc
        call = parse_chat(body, self.model)
        if self.page_key == "bytes":
            image = inspect_png_header(call.image)
        else:
            loop = asyncio.get_running_loop()
            image = await loop.run_in_executor(None, inspect_image, call.image)
        prompt, key = recognise(call.text), image.key
        record.update(
            task=prompt.task,
            page=key,
            subject=subject(prompt),
            temperature=call.temperature,
            max_tokens=call.max_tokens,
            prompt_tokens=prompt_tokens(call, image),
        )
        if prompt.task == "other" and len(self.unrecognised) < UNRECOGNISED_SAMPLES:
            self.unrecognised.append(call.text[:300])
        rule = self.faults.pick(prompt.task, key)
        fault = rule.kind if rule is not None else None
        record["fault"] = fault
        if rule is not None and rule.kind in HTTP_FAULTS:
            record["prompt_tokens"] = 0
            retry_after = rule.retry_after_header()
            raise ApiError(
                HTTP_FAULTS[rule.kind],
                f"{OWNER}: injected fault {rule.kind}",
                {"Retry-After": retry_after} if retry_after is not None else None,
            )
        if fault == "drop":
            record.update(status="dropped", prompt_tokens=0)
            return await drop_connection(request)
        record["queued_at"] = self._since_start()
        async with self.gpu.slot() as service_s:
            record["started_at"] = self._since_start()
            record["queued_seconds"] = record["started_at"] - record["queued_at"]
            completed = await self._hold(self.stall_seconds if fault == "stall" else service_s)
            record["service_seconds"] = self._since_start() - record["started_at"]
        if not completed:  # the server is stopping
            record["status"] = "cancelled"
            return await drop_connection(request)
        answer = self._answer(call, record, self.truth.answer(prompt, key), fault, prompt.task)
        if fault == "drop_mid_body":
            record.update(status="dropped", finish_reason=None)
            return await drop_mid_body(request, json.dumps(answer).encode())
        return web.json_response(answer)

    def _answer(
        self,
        call: ChatCall,
        record: dict[str, Any],
        content: str,
        fault: str | None,
        task: Task,
    ) -> dict[str, Any]:
        finish_reason = "stop"
        if fault is not None and fault not in TRANSPORT_KINDS:
            content, finish_reason = corrupt(fault, content, task)
        completion = completion_tokens(content)
        # huge_answer plays a server that ignores max_tokens.
        if call.max_tokens is not None and completion > call.max_tokens and fault != "huge_answer":
            content = content[: call.max_tokens * 4]
            completion, finish_reason = call.max_tokens, "length"
        record.update(status="200", finish_reason=finish_reason, completion_tokens=completion)
        return {
            "id": f"chatcmpl-{OWNER}-{record['seq']}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "tool_calls": []},
                    "logprobs": None,
                    "finish_reason": finish_reason,
                    "stop_reason": None,
                }
            ],
            "usage": {
                "prompt_tokens": record["prompt_tokens"],
                "completion_tokens": completion,
                "total_tokens": record["prompt_tokens"] + completion,
            },
        }

    async def _hold(self, seconds: float) -> bool:
        """Hold the slot for `seconds`; False if the server started stopping first."""
        if self.stopping.is_set():
            return False
        try:
            await asyncio.wait_for(self.stopping.wait(), seconds)
        except TimeoutError:
            return True
        return False

    async def models(self, request: web.Request) -> web.StreamResponse:
        if self.health in NO_MODEL:
            return await drop_connection(request)
        return web.json_response(
            {
                "object": "list",
                "data": [
                    {
                        "id": self.model,
                        "object": "model",
                        "created": int(time.time()),
                        "owned_by": OWNER,
                        "root": self.model,
                        "parent": None,
                        "max_model_len": MAX_MODEL_LEN,
                        "permission": [],
                        "metadata": {"test_double": True, "capacity": self.gpu.capacity},
                    }
                ],
            }
        )

    async def health_check(self, request: web.Request) -> web.StreamResponse:
        self.health_probes += 1
        self.notify()
        if self.health == "down":
            return await drop_connection(request)
        return web.Response(status=200 if self.health == "ok" else 503)


async def drop_connection(request: web.Request) -> web.StreamResponse:
    """Close the connection without an answer; the handler is cancelled when aiohttp notices."""
    if request.transport is not None:
        request.transport.close()
    await asyncio.sleep(SHUTDOWN_TIMEOUT_S)  # not reached with handler_cancellation=True
    raise asyncio.CancelledError


async def drop_mid_body(request: web.Request, body: bytes) -> web.StreamResponse:
    """Send a 200 with the full Content-Length but only about half of `body`, then close."""
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    return await drop_connection(request)  # the transport flushes what was written, then closes


DOUBLE: web.AppKey[OcrfluxDouble] = web.AppKey("ocrflux_double", OcrfluxDouble)


def create_app(double: OcrfluxDouble) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[DOUBLE] = double
    app.router.add_post("/v1/chat/completions", double.chat_completions)
    app.router.add_get("/v1/models", double.models)
    app.router.add_get("/health", double.health_check)
    add_control_routes(app, double)

    async def stop_stalls(_: web.Application) -> None:
        double.stopping.set()

    app.on_shutdown.append(stop_stalls)
    return app


class OcrfluxTestServer:
    """The double bound to a socket on the running event loop: `await start()`, `await stop()`."""

    def __init__(self, config: DoubleConfig | None = None) -> None:
        self.config = config or DoubleConfig()
        self.double = OcrfluxDouble(self.config)
        self.app = create_app(self.double)
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._runner = web.AppRunner(
            self.app,
            handler_cancellation=True,
            access_log=None,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound_port = self._runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{bound_port}"
        log.info(
            "OCRFlux-3B TEST DOUBLE (not a model, %s) serving %r at %s: capacity %d, "
            "service time %s",
            OWNER,
            self.double.model,
            self.url,
            self.double.gpu.capacity,
            self.double.gpu.service_time.to_json(),
        )
        return self.url

    async def stop(self) -> None:
        self.double.stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.ocrflux_server",
        description="OCRFlux-3B TEST DOUBLE: an OpenAI-compatible server that answers like the "
        "model, for tests, benchmarks and demos. Not a model.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="the served model name")
    parser.add_argument("--capacity", type=int, default=8, help="simulated GPU slots")
    parser.add_argument(
        "--service-time", type=float, default=0.0, help="mean seconds a request holds its slot"
    )
    parser.add_argument(
        "--service-jitter",
        type=float,
        default=0.0,
        help="service time is uniform in mean*(1±jitter)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the service-time draws")
    parser.add_argument("--stall-seconds", type=float, default=DEFAULT_STALL_SECONDS)
    parser.add_argument(
        "--page-key",
        choices=PAGE_KEYS,
        default="pixels",
        help="identify pages by their decoded pixels (default) or by the SHA-256 of the PNG "
        "bytes (cheap: for benchmarks, so the double does not steal the pipeline's CPU)",
    )
    parser.add_argument(
        "--fault",
        dest="faults",
        action="append",
        default=[],
        type=_fault_arg,
        metavar="KIND[:FIELD=VALUE,...]",
        help="a fault rule in effect from the start, e.g. http_429:count=3,retry_after=2 "
        "(fields: rate, count, task, pages, seed, retry_after; repeat for more)",
    )
    parser.add_argument("--port-file", type=Path, help="write the bound port number here")
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def _fault_arg(spec: str) -> FaultRule:
    try:
        return FaultRule.from_spec(spec)
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


async def serve(args: argparse.Namespace) -> None:
    config = DoubleConfig(
        model=args.model,
        capacity=args.capacity,
        stall_seconds=args.stall_seconds,
        service_time=ServiceTime(args.service_time, args.service_jitter, args.seed),
        page_key=args.page_key,
        faults=tuple(args.faults),
    )
    server = OcrfluxTestServer(config)
    url = await server.start(args.host, args.port)
    if args.port_file is not None:
        partial = args.port_file.with_name(args.port_file.name + ".partial")
        partial.write_text(f"{url.rsplit(':', 1)[1]}\n")
        os.replace(partial, args.port_file)
    print(url, flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("OCRFlux-3B test double at %s stopping", url)
        await server.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
