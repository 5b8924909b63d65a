"""`ocrflux broker start|status|stop` and the bootstrap-address resolution every command uses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import kafka_broker
from deploy.kafka_broker import BrokerError, BrokerState


def _ocrflux(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["OCRFLUX_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "ocrflux.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_resolution_without_broker_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with pytest.raises(BrokerError, match=r"KAFKA_BOOTSTRAP_SERVERS.*ocrflux broker start"):
        kafka_broker.resolve_bootstrap(state_file=tmp_path / "broker.json")


def test_environment_wins_over_state_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9092")
    assert kafka_broker.resolve_bootstrap(state_file=tmp_path / "none.json") == "kafka.example:9092"
    assert kafka_broker.resolve_bootstrap("explicit:1") == "explicit:1"


def test_state_of_a_dead_pid_is_not_a_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    dead = subprocess.Popen(["true"])
    dead.wait()
    state_file = tmp_path / "broker.json"
    BrokerState(
        pid=dead.pid,
        bootstrap="127.0.0.1:1",
        version="4.1.1",
        work_dir=str(tmp_path),
        log_file="",
        started_at=0,
    ).save(state_file)
    assert kafka_broker.running_state(state_file) is None
    with pytest.raises(BrokerError):
        kafka_broker.resolve_bootstrap(state_file=state_file)


@pytest.mark.kafka
def test_start_status_stop_cycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    home = tmp_path / "home"
    started = _ocrflux(home, "broker", "start")
    assert started.returncode == 0, started.stderr
    state = BrokerState.load(home / "kafka" / "broker.json")
    assert state is not None and kafka_broker.is_our_broker(state)
    try:
        assert f"at {state.bootstrap}" in started.stdout

        again = _ocrflux(home, "broker", "start")
        assert "already running" in again.stdout and str(state.pid) in again.stdout

        status = _ocrflux(home, "broker", "status")
        assert status.returncode == 0
        assert f"bootstrap: {state.bootstrap}" in status.stdout
        assert f"kafka version: {kafka_broker.kafka_version()}" in status.stdout
        assert kafka_broker.kafka_version().startswith("4.")
        assert (
            kafka_broker.resolve_bootstrap(state_file=home / "kafka" / "broker.json")
            == state.bootstrap
        )
    finally:
        stopped = _ocrflux(home, "broker", "stop")
    assert stopped.returncode == 0 and f"pid {state.pid}" in stopped.stdout
    assert not kafka_broker.pid_alive(state.pid)
    assert _ocrflux(home, "broker", "status").returncode == 1
