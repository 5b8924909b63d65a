"""The deployment guide's start scripts: usage, the exact `vllm serve` command line, the API's
environment and its vLLM health check. A stub stands in for `vllm` and for Python; every
server and probe stays on loopback."""

from __future__ import annotations

import http.server
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VLLM_SCRIPT = DEPLOY / "start_vllm_a100.sh"
API_SCRIPT = DEPLOY / "start_document_api_remote.sh"
SCRIPTS = (VLLM_SCRIPT, API_SCRIPT)
BASH = shutil.which("bash") or "/bin/bash"

#: Variables the scripts read; cleared so that the caller's environment cannot change a result.
SCRIPT_VARIABLES = (
    "MODEL_NAME",
    "VLLM_HOST",
    "MAX_MODEL_LEN",
    "GPU_MEMORY_UTILIZATION",
    "MAX_NUM_SEQS",
    "MAX_NUM_BATCHED_TOKENS",
    "LIMIT_MM_PER_PROMPT",
    "TENSOR_PARALLEL_SIZE",
    "DTYPE",
    "QUANTIZATION",
    "ENABLE_PREFIX_CACHING",
    "VLLM_BIN",
    "VLLM_URL",
    "VLLM_PORT",
    "API_PORT",
    "API_HOST",
    "SKIP_CROSS_PAGE_MERGE",
    "MAX_PAGE_RETRIES",
    "OCRFLUX_MODE",
    "OCRFLUX_PYTHON",
    "VLLM_HEALTH_TIMEOUT",
    "PYTHONPATH",
)

#: `vllm serve` as the script runs it with no arguments and no overrides.
DEFAULT_VLLM_ARGV = [
    "serve",
    "ChatDOC/OCRFlux-3B",
    "--host",
    "0.0.0.0",
    "--port",
    "8003",
    "--served-model-name",
    "ChatDOC/OCRFlux-3B",
    "--max-model-len",
    "32768",
    "--gpu-memory-utilization",
    "0.95",
    "--max-num-seqs",
    "256",
    "--max-num-batched-tokens",
    "16384",
    "--limit-mm-per-prompt",
    '{"image": 1, "video": 0}',
]

# Prints its PID, then its arguments one per line (`vllm` stand-in).
_ARGV_STUB = '#!/bin/sh\necho "PID:$$"\nfor arg in "$@"; do echo "ARG:$arg"; done\n'
# Prints its PID, its arguments and its environment (Python stand-in).
_ENV_STUB = '#!/bin/sh\necho "PID:$$"\necho "ARGV:$*"\nenv | sed "s/^/ENV:/"\n'


def _stub(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(body)
    path.chmod(0o755)
    return path


def _environment(path_first: Path | None = None, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRIPT_VARIABLES}
    if path_first is not None:
        env["PATH"] = f"{path_first}{os.pathsep}{env.get('PATH', '')}"
    env.update(overrides)
    return env


class Run:
    """One script run: exit code, output, and the PID of the process that ran the script."""

    def __init__(self, args: list[str], env: Mapping[str, str], cwd: Path = ROOT) -> None:
        proc = subprocess.Popen(
            args,
            env=dict(env),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.pid = proc.pid
        self.stdout, self.stderr = proc.communicate(timeout=60)
        self.returncode = proc.returncode

    def lines(self, prefix: str) -> list[str]:
        return [line[len(prefix) :] for line in self.stdout.splitlines() if line.startswith(prefix)]

    @property
    def argv(self) -> list[str]:
        return self.lines("ARG:")

    @property
    def child_env(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.lines("ENV:") if "=" in line)

    @property
    def exec_pid(self) -> int:
        (pid,) = self.lines("PID:")
        return int(pid)


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def fake_vllm(tmp_path: Path) -> Path:
    """A folder whose `vllm` prints its arguments; put it first on PATH."""
    folder = tmp_path / "fake-bin"
    _stub(folder, "vllm", _ARGV_STUB)
    return folder


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    return _stub(tmp_path / "fake-python", "python", _ENV_STUB)


@pytest.fixture
def healthy_vllm() -> Iterator[int]:
    """A loopback server answering 200 on /health, like vLLM once the model is loaded."""

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/health" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


# --- both scripts -----------------------------------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_parses_and_is_executable(script: Path) -> None:
    result = subprocess.run([BASH, "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert os.access(script, os.X_OK)
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_root_level_symlink_points_into_deploy(script: Path) -> None:
    link = ROOT / script.name
    assert link.is_symlink(), f"{link.name} must be a symlink (the guide runs ./{link.name})"
    assert os.readlink(link) == f"deploy/{script.name}"
    assert link.resolve() == script.resolve()


def test_vllm_help_shows_the_guides_usage() -> None:
    result = Run([str(ROOT / "start_vllm_a100.sh"), "--help"], _environment())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: ./start_vllm_a100.sh [model_path] [port]")
    for name in (
        "MAX_MODEL_LEN",
        "GPU_MEMORY_UTILIZATION",
        "MAX_NUM_SEQS",
        "MAX_NUM_BATCHED_TOKENS",
        "TENSOR_PARALLEL_SIZE",
        "DTYPE",
        "QUANTIZATION",
        "ENABLE_PREFIX_CACHING",
        "MODEL_NAME",
    ):
        assert name in result.stdout
    assert "pip install '.[vllm]'" in result.stdout


def test_api_help_shows_the_guides_usage() -> None:
    result = Run([str(ROOT / "start_document_api_remote.sh"), "-h"], _environment())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        "Usage: ./start_document_api_remote.sh [vllm_url] [vllm_port] [api_port] [api_host]"
    )
    for text in (
        "http://localhost",
        "8003",
        "8001",
        "0.0.0.0",
        "MODEL_NAME",
        "SKIP_CROSS_PAGE_MERGE",
        "MAX_PAGE_RETRIES",
        "OCRFLUX_MODE",
        "/health",
    ):
        assert text in result.stdout


# --- start_vllm_a100.sh ---------------------------------------------------------------------


def test_vllm_defaults_keep_the_gpu_busy(fake_vllm: Path) -> None:
    result = Run([str(ROOT / "start_vllm_a100.sh")], _environment(fake_vllm))
    assert result.returncode == 0, result.stderr
    assert result.argv == DEFAULT_VLLM_ARGV
    # The community script's pitfalls: a flag current vLLM rejects, and 10 sequences at a time.
    assert "--use-v2-block-manager" not in result.argv
    max_num_seqs = int(result.argv[result.argv.index("--max-num-seqs") + 1])
    assert max_num_seqs >= 128
    # Optional flags stay out unless their variable is set.
    for flag in ("--tensor-parallel-size", "--dtype", "--quantization", "--enable-prefix-caching"):
        assert flag not in result.argv


def test_vllm_execs_so_that_signals_reach_the_server(fake_vllm: Path) -> None:
    result = Run([str(VLLM_SCRIPT)], _environment(fake_vllm))
    assert result.returncode == 0, result.stderr
    assert result.exec_pid == result.pid
    assert "exec" in result.stderr and "--max-num-seqs 256" in result.stderr


def test_vllm_positional_arguments_and_every_override(fake_vllm: Path) -> None:
    env = _environment(
        fake_vllm,
        MODEL_NAME="ocrflux",
        VLLM_HOST="127.0.0.1",
        MAX_MODEL_LEN="16384",
        GPU_MEMORY_UTILIZATION="0.9",
        MAX_NUM_SEQS="512",
        MAX_NUM_BATCHED_TOKENS="8192",
        LIMIT_MM_PER_PROMPT='{"image": 1}',
        TENSOR_PARALLEL_SIZE="2",
        DTYPE="bfloat16",
        QUANTIZATION="fp8",
        ENABLE_PREFIX_CACHING="true",
    )
    result = Run([str(VLLM_SCRIPT), "/models/OCRFlux-3B", "9003", "--enforce-eager"], env)
    assert result.returncode == 0, result.stderr
    assert result.argv == [
        "serve",
        "/models/OCRFlux-3B",
        "--host",
        "127.0.0.1",
        "--port",
        "9003",
        "--served-model-name",
        "ocrflux",
        "--max-model-len",
        "16384",
        "--gpu-memory-utilization",
        "0.9",
        "--max-num-seqs",
        "512",
        "--max-num-batched-tokens",
        "8192",
        "--limit-mm-per-prompt",
        '{"image": 1}',
        "--tensor-parallel-size",
        "2",
        "--dtype",
        "bfloat16",
        "--quantization",
        "fp8",
        "--enable-prefix-caching",
        "--enforce-eager",
    ]


def test_vllm_local_model_path_keeps_the_served_name(fake_vllm: Path) -> None:
    result = Run([str(VLLM_SCRIPT), "/models/ocrflux"], _environment(fake_vllm))
    assert result.returncode == 0, result.stderr
    assert result.argv[:2] == ["serve", "/models/ocrflux"]
    name = result.argv[result.argv.index("--served-model-name") + 1]
    assert name == "ChatDOC/OCRFlux-3B"  # what the API and the workers send as `model`


@pytest.mark.parametrize(
    ("value", "flag"),
    [
        ("false", "--no-enable-prefix-caching"),
        ("0", "--no-enable-prefix-caching"),
        ("Yes", "--enable-prefix-caching"),
    ],
)
def test_vllm_prefix_caching_switch(fake_vllm: Path, value: str, flag: str) -> None:
    result = Run([str(VLLM_SCRIPT)], _environment(fake_vllm, ENABLE_PREFIX_CACHING=value))
    assert result.returncode == 0, result.stderr
    assert result.argv[-1] == flag


def test_vllm_empty_variables_mean_the_default(fake_vllm: Path) -> None:
    empty = dict.fromkeys(
        (
            "MAX_NUM_SEQS",
            "DTYPE",
            "QUANTIZATION",
            "TENSOR_PARALLEL_SIZE",
            "ENABLE_PREFIX_CACHING",
            "MODEL_NAME",
        ),
        "",
    )
    result = Run([str(VLLM_SCRIPT)], _environment(fake_vllm, **empty))
    assert result.returncode == 0, result.stderr
    assert result.argv == DEFAULT_VLLM_ARGV


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["ChatDOC/OCRFlux-3B", "http"], {}, "port must be a number"),
        (["ChatDOC/OCRFlux-3B", "70000"], {}, "port must be a number"),
        ([], {"MAX_NUM_SEQS": "ten"}, "MAX_NUM_SEQS must be a positive integer"),
        ([], {"MAX_MODEL_LEN": "0"}, "MAX_MODEL_LEN must be a positive integer"),
        ([], {"GPU_MEMORY_UTILIZATION": "95"}, "GPU_MEMORY_UTILIZATION must be a fraction"),
        ([], {"GPU_MEMORY_UTILIZATION": "0.0"}, "GPU_MEMORY_UTILIZATION must be a fraction"),
        ([], {"TENSOR_PARALLEL_SIZE": "two"}, "TENSOR_PARALLEL_SIZE must be a positive"),
        ([], {"ENABLE_PREFIX_CACHING": "maybe"}, "ENABLE_PREFIX_CACHING must be true or false"),
    ],
)
def test_vllm_rejects_bad_values_before_starting(
    fake_vllm: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    result = Run([str(VLLM_SCRIPT), *args], _environment(fake_vllm, **env))
    assert result.returncode == 2
    assert message in result.stderr
    assert result.argv == []  # vllm never started


def _isolated_copy(tmp_path: Path, script: Path) -> Path:
    """The script in a checkout of its own (no .venv), to test how it finds executables."""
    target = tmp_path / "checkout" / "deploy" / script.name
    target.parent.mkdir(parents=True)
    shutil.copy2(script, target)
    return target


def _minimal_path(tmp_path: Path, *tools: str) -> Path:
    """A PATH folder holding only `tools` (links to the real ones), so no `vllm` is found."""
    folder = tmp_path / "minimal-bin"
    folder.mkdir()
    for tool in tools:
        real = shutil.which(tool)
        assert real, f"{tool} is needed by the script"
        (folder / tool).symlink_to(real)
    return folder


def test_vllm_missing_says_how_to_install_it(tmp_path: Path) -> None:
    script = _isolated_copy(tmp_path, VLLM_SCRIPT)
    env = _environment(PATH=str(_minimal_path(tmp_path, "dirname", "readlink", "cat")))
    result = Run([BASH, str(script)], env)
    assert result.returncode == 127
    assert "vLLM is not installed" in result.stderr
    assert "pip install '.[vllm]'" in result.stderr


def test_vllm_bin_that_does_not_exist_is_reported(tmp_path: Path) -> None:
    env = _environment(VLLM_BIN=str(tmp_path / "no-such-vllm"))
    result = Run([str(VLLM_SCRIPT)], env)
    assert result.returncode == 127
    assert "VLLM_BIN=" in result.stderr and "pip install '.[vllm]'" in result.stderr


def test_vllm_from_the_checkouts_virtualenv(tmp_path: Path) -> None:
    script = _isolated_copy(tmp_path, VLLM_SCRIPT)
    _stub(tmp_path / "checkout" / ".venv" / "bin", "vllm", _ARGV_STUB)
    env = _environment(PATH=str(_minimal_path(tmp_path, "dirname", "readlink", "cat")))
    result = Run([BASH, str(script)], env)
    assert result.returncode == 0, result.stderr
    assert result.argv == DEFAULT_VLLM_ARGV


# --- start_document_api_remote.sh -------------------------------------------------------------


def test_api_exports_the_guides_variables_from_positional_arguments(fake_python: Path) -> None:
    port = _free_loopback_port()  # nothing listens there
    env = _environment(OCRFLUX_PYTHON=str(fake_python), VLLM_HEALTH_TIMEOUT="3")
    args = [
        str(ROOT / "start_document_api_remote.sh"),
        "http://127.0.0.1",
        str(port),
        "8101",
        "127.0.0.1",
    ]
    result = Run(args, env)
    assert result.returncode == 0, result.stderr
    assert result.lines("ARGV:") == ["-m ocrflux.document_api_server_remote"]
    child = result.child_env
    assert child["VLLM_URL"] == "http://127.0.0.1"
    assert child["VLLM_PORT"] == str(port)
    assert child["API_PORT"] == "8101"
    assert child["API_HOST"] == "127.0.0.1"
    assert child["MODEL_NAME"] == "ChatDOC/OCRFlux-3B"
    assert child["SKIP_CROSS_PAGE_MERGE"] == "false"
    assert child["MAX_PAGE_RETRIES"] == "1"
    assert f"WARNING: vLLM does not answer at http://127.0.0.1:{port}/health" in result.stderr
    assert result.exec_pid == result.pid  # exec: signals reach the server


def test_api_defaults_are_the_guides(fake_python: Path) -> None:
    env = _environment(OCRFLUX_PYTHON=str(fake_python), VLLM_HEALTH_TIMEOUT="2")
    result = Run([str(API_SCRIPT)], env)
    assert result.returncode == 0, result.stderr
    child = result.child_env
    assert (child["VLLM_URL"], child["VLLM_PORT"]) == ("http://localhost", "8003")
    assert (child["API_PORT"], child["API_HOST"]) == ("8001", "0.0.0.0")
    assert "http://localhost:8003/health" in result.stderr


def test_api_environment_fills_in_for_missing_arguments(fake_python: Path) -> None:
    env = _environment(
        OCRFLUX_PYTHON=str(fake_python),
        VLLM_HEALTH_TIMEOUT="2",
        VLLM_URL="http://127.0.0.1",
        VLLM_PORT="1",
        API_PORT="9101",
        MODEL_NAME="ocrflux",
        SKIP_CROSS_PAGE_MERGE="true",
        MAX_PAGE_RETRIES="3",
        OCRFLUX_MODE="kafka",
    )
    result = Run([str(API_SCRIPT), "", "", ""], env)
    assert result.returncode == 0, result.stderr
    child = result.child_env
    assert child["VLLM_URL"] == "http://127.0.0.1"
    assert child["VLLM_PORT"] == "1"
    assert child["API_PORT"] == "9101"
    assert child["MODEL_NAME"] == "ocrflux"
    assert child["SKIP_CROSS_PAGE_MERGE"] == "true"
    assert child["MAX_PAGE_RETRIES"] == "3"
    assert child["OCRFLUX_MODE"] == "kafka"  # passed through untouched


def test_api_health_check_passes_quietly_when_vllm_answers(
    fake_python: Path, healthy_vllm: int
) -> None:
    assert shutil.which("curl"), "the health check needs curl"
    env = _environment(OCRFLUX_PYTHON=str(fake_python))
    result = Run([str(API_SCRIPT), "http://127.0.0.1", str(healthy_vllm)], env)
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr
    assert f"vLLM is up at http://127.0.0.1:{healthy_vllm}/health" in result.stderr


def test_api_health_check_of_each_listed_server(fake_python: Path, healthy_vllm: int) -> None:
    down = _free_loopback_port()
    vllm_url = f"127.0.0.1, http://127.0.0.1:{down}/v1/"
    env = _environment(OCRFLUX_PYTHON=str(fake_python), VLLM_HEALTH_TIMEOUT="3")
    result = Run([str(API_SCRIPT), vllm_url, str(healthy_vllm)], env)
    assert result.returncode == 0, result.stderr
    assert f"vLLM is up at http://127.0.0.1:{healthy_vllm}/health" in result.stderr
    assert f"WARNING: vLLM does not answer at http://127.0.0.1:{down}/health" in result.stderr
    assert result.child_env["VLLM_URL"] == vllm_url  # the API reads the list itself


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["http://127.0.0.1", "port"], "vllm_port must be a number"),
        (["http://127.0.0.1", "8003", "0"], "api_port must be a number"),
        (["a", "1", "2", "3", "4"], "at most 4 arguments"),
    ],
)
def test_api_rejects_bad_arguments(fake_python: Path, args: list[str], message: str) -> None:
    result = Run([str(API_SCRIPT), *args], _environment(OCRFLUX_PYTHON=str(fake_python)))
    assert result.returncode == 2
    assert message in result.stderr
    assert result.lines("ARGV:") == []


def test_api_uses_the_checkouts_virtualenv_python(tmp_path: Path) -> None:
    script = _isolated_copy(tmp_path, API_SCRIPT)
    _stub(tmp_path / "checkout" / ".venv" / "bin", "python", _ENV_STUB)
    env = _environment(
        VLLM_URL="http://127.0.0.1", VLLM_PORT=str(_free_loopback_port()), VLLM_HEALTH_TIMEOUT="2"
    )
    result = Run([BASH, str(script)], env)
    assert result.returncode == 0, result.stderr
    assert result.lines("ARGV:") == ["-m ocrflux.document_api_server_remote"]
    assert "PYTHONPATH" not in result.child_env


def test_api_falls_back_to_python3_with_the_checkout_importable(tmp_path: Path) -> None:
    script = _isolated_copy(tmp_path, API_SCRIPT)
    stubs = tmp_path / "stub-bin"
    _stub(stubs, "python3", _ENV_STUB)
    env = _environment(
        stubs,
        VLLM_URL="http://127.0.0.1",
        VLLM_PORT=str(_free_loopback_port()),
        VLLM_HEALTH_TIMEOUT="2",
    )
    result = Run([BASH, str(script)], env)
    assert result.returncode == 0, result.stderr
    assert result.lines("ARGV:") == ["-m ocrflux.document_api_server_remote"]
    assert result.child_env["PYTHONPATH"] == str(tmp_path / "checkout")
