"""Fixtures of the HTTP API's tests: API server processes, loopback web sites, Redis.

api_servers    `factory(name, **env) -> ApiProcess`: `python -m ocrflux.document_api_server_remote`
               on a free loopback port with the given environment, ready (GET /health
               answers), ended by its PID after the test (through `processes`)
web_site       `factory(host) -> Site`: a loopback aiohttp site in a thread of its own that
               serves documents, redirects, and receives callbacks (see `Site`)
redis_server   a real `redis-server` (Debian's package) on a free loopback port, for the
               session, ended by its PID; its URL
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from deploy.kafka_broker import free_port
from tests.fixtures.processes import ProcessGroup

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0


@dataclass
class ApiProcess:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    processes: ProcessGroup

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.processes.log(self.name)

    def get_json(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def peak_rss_kib(self) -> int:
        """The process's peak resident set size (VmHWM), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc status")


def _wait_ready(api: ApiProcess) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        assert api.process.poll() is None, f"{api.name} exited:\n{api.log()[-4000:]}"
        try:
            with urllib.request.urlopen(api.url + "/health", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        assert time.monotonic() < deadline, f"{api.name} not ready:\n{api.log()[-4000:]}"
        time.sleep(0.1)  # poll interval while the server starts


@pytest.fixture
def api_servers(processes: ProcessGroup) -> Callable[..., ApiProcess]:
    def start(name: str = "api", *, module: str = "server", **env: str) -> ApiProcess:
        port = free_port()
        full_env = {
            "API_HOST": "127.0.0.1",
            "API_PORT": str(port),
            "VLLM_RETRY_BUDGET_S": "5",
            **env,
        }
        args = (
            ["-m", "ocrflux.document_api_server_remote"]
            if module == "server"
            else ["-m", "ocrflux.cli", "api", "--host", "127.0.0.1", "--port", str(port)]
        )
        process = processes.python(name, args, full_env)
        api = ApiProcess(name, f"http://127.0.0.1:{port}", process, processes)
        _wait_ready(api)
        return api

    return start


# --- loopback web sites ----------------------------------------------------------------------


@dataclass
class Site:
    """`GET /files/<name>` serves `files[name]`; `GET /redirect?to=URL` answers 302 to URL;
    `POST /callback` records the JSON body and answers `callback_statuses` in turn (then 200)."""

    host: str
    files: dict[str, bytes] = field(default_factory=dict)
    callback_statuses: list[int] = field(default_factory=list)
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_callbacks(self, count: int, timeout_s: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if len(self.callbacks) >= count:
                    return list(self.callbacks)
            assert time.monotonic() < deadline, f"{len(self.callbacks)} of {count} callbacks"
            time.sleep(0.05)  # poll interval on the callbacks received

    def app(self) -> web.Application:
        async def files(request: web.Request) -> web.Response:
            data = self.files.get(request.match_info["name"])
            if data is None:
                raise web.HTTPNotFound()
            return web.Response(body=data, content_type="application/pdf")

        async def redirect(request: web.Request) -> web.Response:
            raise web.HTTPFound(request.query["to"])

        async def callback(request: web.Request) -> web.Response:
            body = await request.json()
            with self._lock:
                self.callbacks.append(body)
                status = self.callback_statuses.pop(0) if self.callback_statuses else 200
            return web.Response(status=status)

        app = web.Application()
        app.router.add_get("/files/{name}", files)
        app.router.add_get("/redirect", redirect)
        app.router.add_post("/callback", callback)
        return app


class _SiteThread:
    def __init__(self, site: Site) -> None:
        self.site = site
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._serve()), daemon=True)
        self._thread.start()
        assert self._ready.wait(10), "the web site did not start"

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.AppRunner(self.site.app())
        await runner.setup()
        site = web.TCPSite(runner, self.site.host, 0)
        await site.start()
        port = runner.addresses[0][1]
        host = f"[{self.site.host}]" if ":" in self.site.host else self.site.host
        self.site.url = f"http://{host}:{port}"
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STOP_TIMEOUT_S)


@pytest.fixture
def web_site() -> Iterator[Callable[[str], Site]]:
    started: list[_SiteThread] = []

    def start(host: str = "127.0.0.1") -> Site:
        thread = _SiteThread(Site(host))
        started.append(thread)
        return thread.site

    yield start
    for thread in started:
        thread.stop()


# --- redis -------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is not installed (Debian: apt-get install -y redis-server)"
    folder = tmp_path_factory.mktemp("redis")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    args += ["no", "--dir", str(folder), "--protected-mode", "yes"]
    with (folder / "redis.log").open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait_redis(url, process, folder / "redis.log")
        yield url
    finally:
        ProcessGroup.stop(process, STOP_TIMEOUT_S)


def _wait_redis(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    deadline = time.monotonic() + 30
    try:
        while True:
            assert process.poll() is None, f"redis-server exited: {log.read_text()}"
            try:
                if client.ping():
                    return
            except redis.exceptions.ConnectionError:
                pass
            assert time.monotonic() < deadline, f"redis-server not answering: {log.read_text()}"
            time.sleep(0.05)  # poll interval while redis-server starts
    finally:
        client.close()
