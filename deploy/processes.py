"""Ending processes we started, by PID: SIGTERM, then SIGKILL after a timeout, and reaping our
own children so that no zombie is left behind; and whether a started server listens yet."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path


def accepts(host: str, port: int) -> bool:
    """Whether a TCP connection to `host:port` is accepted now."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] == "Z"


def stop_pid(pid: int, timeout_s: float = 30.0) -> None:
    """SIGTERM (controlled shutdown), then SIGKILL after `timeout_s`; reap if it is our child."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _reap(pid) or not pid_alive(pid):
            return
        time.sleep(0.2)  # poll interval while the broker shuts down
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(50):
        if _reap(pid) or not pid_alive(pid):
            return
        time.sleep(0.1)  # poll interval after SIGKILL


def _reap(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == pid
