"""Pytest fixtures for the OCRFlux-3B test double (a test double, not a model).

Load with `pytest_plugins = ["tests.fakes.fixtures"]` in a root conftest, or import the fixtures.

    ocrflux_server               a double on 127.0.0.1 (free port) in a background thread with
                                 its own event loop, capacity 8, no service time; stopped after
                                 the test. Usable from sync tests and from async tests on any loop.
    ocrflux_server_factory       `factory(model=, capacity=, service_time=, stall_seconds=,
                                 page_key=, faults=)`
                                 starts more (or differently configured) threaded doubles.
    ocrflux_subprocess           the double as a separate process (`python -m
                                 tests.fakes.ocrflux_server`), stopped by its own PID.
    ocrflux_subprocess_factory   `factory(capacity=, service_time=, port=, faults=, ...)` for
                                 custom processes; `port=` of a stopped one brings it back.

`faults=` takes the command line's rule specs (`["http_429:count=2"]`, see faults.py).

Every handle is a `ControlClient` (sync control methods) with `.url` (base URL, no trailing
slash), `.chat_url`, `.model` and `.aio` (an `AsyncControlClient` for async tests).
"""

from __future__ import annotations

import asyncio
import os
import selectors
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from tests.fakes.control import AsyncControlClient, ControlClient
from tests.fakes.faults import FaultRule
from tests.fakes.gpu import ServiceTime
from tests.fakes.ocrflux_server import (
    DEFAULT_MODEL,
    DEFAULT_STALL_SECONDS,
    DoubleConfig,
    OcrfluxTestServer,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


class _Handle(ControlClient):
    def __init__(self, url: str, model: str) -> None:
        super().__init__(url)
        self.model = model
        self.chat_url = f"{self.url}/v1/chat/completions"
        self.aio = AsyncControlClient(self.url)


class ThreadedOcrfluxServer(_Handle):
    """The double on its own event loop in a daemon thread; `stop()` ends it and the thread."""

    def __init__(self, config: DoubleConfig | None = None) -> None:
        self.config = config or DoubleConfig()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._url = ""
        self._thread = threading.Thread(target=self._run, name="ocrflux-test-double", daemon=True)
        self._thread.start()
        if not self._ready.wait(STARTUP_TIMEOUT_S):
            raise RuntimeError("the OCRFlux test double did not start in time")
        if self._error is not None:
            raise RuntimeError("the OCRFlux test double failed to start") from self._error
        super().__init__(self._url, self.config.model)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = OcrfluxTestServer(self.config)
        try:
            self._url = await server.start("127.0.0.1", 0)
        except Exception as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await server.stop()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STOP_TIMEOUT_S)
        if self._thread.is_alive():
            raise RuntimeError("the OCRFlux test double thread did not stop")


class SubprocessOcrfluxServer(_Handle):
    """The double as a child process; `stop()` sends SIGTERM to that PID only."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, model: str) -> None:
        super().__init__(url, model)
        self.process = process
        self.pid = process.pid

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """Stop gracefully (SIGTERM, then SIGKILL after `timeout`); return the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        code = self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        return code


def start_ocrflux_subprocess(
    *,
    model: str = DEFAULT_MODEL,
    capacity: int = 8,
    service_time: float = 0.0,
    service_jitter: float = 0.0,
    seed: int = 0,
    stall_seconds: float = DEFAULT_STALL_SECONDS,
    port: int = 0,
    faults: Sequence[str] = (),
    port_file: Path | None = None,
    stderr: IO[bytes] | None = None,
) -> SubprocessOcrfluxServer:
    """Start `python -m tests.fakes.ocrflux_server` on 127.0.0.1 (`port` 0: a free one); wait
    for its URL."""
    args = [
        sys.executable,
        "-m",
        "tests.fakes.ocrflux_server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--model",
        model,
        "--capacity",
        str(capacity),
        "--service-time",
        str(service_time),
        "--service-jitter",
        str(service_jitter),
        "--seed",
        str(seed),
        "--stall-seconds",
        str(stall_seconds),
    ]
    for spec in faults:
        args += ["--fault", spec]
    if port_file is not None:
        args += ["--port-file", str(port_file)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        args,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
    )
    try:
        url = _read_url(process)
    except BaseException:
        process.kill()
        process.wait()
        raise
    return SubprocessOcrfluxServer(process, url, model)


def _read_url(process: subprocess.Popen[bytes]) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(STARTUP_TIMEOUT_S):
            raise RuntimeError("the OCRFlux test double process printed no URL in time")
    line = process.stdout.readline().decode().strip()
    if not line.startswith("http://"):
        raise RuntimeError(
            f"the OCRFlux test double process failed to start "
            f"(exit code {process.poll()}, first line {line!r})"
        )
    return line


def _threaded_config(
    model: str = DEFAULT_MODEL,
    capacity: int = 8,
    service_time: float | ServiceTime | dict[str, Any] = 0.0,
    stall_seconds: float = DEFAULT_STALL_SECONDS,
    page_key: str = "pixels",
    faults: Sequence[str] = (),
) -> DoubleConfig:
    return DoubleConfig(
        model=model,
        capacity=capacity,
        service_time=ServiceTime.parse(service_time),
        stall_seconds=stall_seconds,
        page_key=page_key,
        faults=tuple(FaultRule.from_spec(spec) for spec in faults),
    )


@pytest.fixture
def ocrflux_server_factory() -> Iterator[Callable[..., ThreadedOcrfluxServer]]:
    started: list[ThreadedOcrfluxServer] = []

    def start(**config: Any) -> ThreadedOcrfluxServer:
        server = ThreadedOcrfluxServer(_threaded_config(**config))
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def ocrflux_server(
    ocrflux_server_factory: Callable[..., ThreadedOcrfluxServer],
) -> ThreadedOcrfluxServer:
    return ocrflux_server_factory()


@pytest.fixture
def ocrflux_subprocess_factory() -> Iterator[Callable[..., SubprocessOcrfluxServer]]:
    started: list[SubprocessOcrfluxServer] = []

    def start(**options: Any) -> SubprocessOcrfluxServer:
        server = start_ocrflux_subprocess(**options)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture
def ocrflux_subprocess(
    ocrflux_subprocess_factory: Callable[..., SubprocessOcrfluxServer],
) -> SubprocessOcrfluxServer:
    return ocrflux_subprocess_factory()
