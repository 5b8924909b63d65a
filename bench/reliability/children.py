"""Short-lived commands (`ocrflux convert`, `ocrflux submit --wait`) run to their end with their
peak memory, and the HTTP API as a server process. Started and ended by PID, loopback only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import harness
from bench.harness import Proc
from deploy.kafka_broker import free_port

API_READY_TIMEOUT_S = 90.0
#: Poll interval while waiting for a command to end (wait4 with WNOHANG).
_POLL_S = 0.05


def vm_hwm_mib(pid: int) -> float | None:
    """The peak resident set size (VmHWM) of a running process, in MiB."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


@dataclass
class Finished:
    exit_code: int | None  # None: killed at the timeout
    peak_rss_mib: float
    seconds: float
    stdout: str
    stderr: str


def run_measured(
    args: Sequence[str], env: Mapping[str, str], log_dir: Path, name: str, timeout_s: float
) -> Finished:
    """`python ARGS` to its end (SIGKILL at `timeout_s`); its exit code and peak RSS: VmHWM,
    read every `_POLL_S` while it runs. (The kernel's ru_maxrss of the reaped child would not
    do: exec keeps the high-water mark of the memory it replaced, the benchmark's own.)"""
    out, err = log_dir / f"{name}.out", log_dir / f"{name}.err"
    started = time.monotonic()
    with out.open("wb") as stdout, err.open("wb") as stderr:
        popen = subprocess.Popen(
            [sys.executable, *args],
            cwd=harness.REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=stdout,
            stderr=stderr,
            stdin=subprocess.DEVNULL,
        )
    deadline = started + timeout_s
    killed = False
    peak = 0.0
    while True:
        peak = max(peak, vm_hwm_mib(popen.pid) or 0.0)
        pid, status = os.waitpid(popen.pid, os.WNOHANG)
        if pid == popen.pid:
            break
        if not killed and time.monotonic() > deadline:
            os.kill(popen.pid, signal.SIGKILL)
            killed = True
        time.sleep(_POLL_S)
    popen.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return Finished(
        exit_code=None if killed else popen.returncode,
        peak_rss_mib=peak,
        seconds=time.monotonic() - started,
        stdout=out.read_text(errors="replace"),
        stderr=err.read_text(errors="replace"),
    )


@dataclass
class Api:
    proc: Proc
    url: str

    def stop(self) -> None:
        self.proc.stop()


def start_api(name: str, log_dir: Path, env: Mapping[str, str]) -> Api:
    """`python -m ocrflux.document_api_server_remote` on a free loopback port, once /health
    answers."""
    port = free_port()
    full_env = {"API_HOST": "127.0.0.1", "API_PORT": str(port), **env}
    proc = harness.start_python(
        name, ["-m", "ocrflux.document_api_server_remote"], log_dir, full_env
    )
    url = f"http://127.0.0.1:{port}"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + API_READY_TIMEOUT_S
    while True:
        if not proc.alive():
            raise RuntimeError(f"{name} exited:\n{proc.log_text()[-3000:]}")
        try:
            with opener.open(url + "/health", timeout=5) as response:
                if response.status == 200:
                    return Api(proc, url)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            proc.stop()
            raise RuntimeError(f"{name} not ready:\n{proc.log_text()[-3000:]}")
        time.sleep(0.1)  # poll interval while the server starts
