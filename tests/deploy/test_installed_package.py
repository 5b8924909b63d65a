"""Installed as a package (not run from the checkout), `ocrflux broker start` still works and
keeps its jars and state in the user's cache folder, never inside site-packages."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel unpacked into a folder of its own (its dependencies come from the
    test run's environment). Built from a copy of the sources, so that the build leaves nothing
    in the checkout and no build folder left in it is reused."""
    source = tmp_path_factory.mktemp("source") / "ocrflux-stream"
    shutil.copytree(
        REPO_ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", ".cache", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
        ),
    )
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--target",
            str(target),
            str(source),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (target / "deploy" / "kafka" / "pom.xml").is_file()
    return target


def _ocrflux(site: Path, cache: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("KAFKA_BOOTSTRAP_SERVERS", "OCRFLUX_HOME", "PYTHONPATH")
    }
    env.update(PYTHONPATH=str(site), XDG_CACHE_HOME=str(cache))
    return subprocess.run(
        [sys.executable, "-m", "ocrflux.cli", *args],
        env=env,
        cwd=cwd,  # not the checkout: the installed copy is the one imported
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_installed_broker_command_caches_under_xdg(installed: Path, tmp_path: Path) -> None:
    cache = tmp_path / "xdg"
    started = _ocrflux(installed, cache, tmp_path, "broker", "start")
    try:
        assert started.returncode == 0, started.stderr
        assert "export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:" in started.stdout
        status = _ocrflux(installed, cache, tmp_path, "broker", "status")
        assert status.returncode == 0, status.stderr
        assert str(cache / "ocrflux" / "kafka") in status.stdout
    finally:
        stopped = _ocrflux(installed, cache, tmp_path, "broker", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert any((cache / "ocrflux" / "kafka").glob("jars-*/.complete"))
    assert not (installed / ".cache").exists()
