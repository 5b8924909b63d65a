"""The `ocrflux` command as users run it: `--version`, the exit status of every kind of outcome
(the same for every command), expected failures as one line on stderr instead of a traceback,
`--debug`, and the help that documents it all.

Exit status and stderr belong to the process, so those tests run the command as a subprocess;
what the parser accepts is checked in-process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

from ocrflux.cli import build_parser
from ocrflux.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, exit_for_status
from schemas.records import ResultRecord
from streams.kafka import KafkaSettings
from tests.connectors.fixtures import produce
from tests.fixtures.processes import REPO_ROOT
from tests.scenarios import pdf_with_lines, register, twelve_page_report

TIMEOUT_S = 120


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test's environment without any of ours (no Kafka, no broker state, default logs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCRFLUX_", "KAFKA_"))}
    for name in ("VLLM_URL", "MAX_PAGES", "MAX_PAGE_RETRIES", "API_KEYS"):
        env.pop(name, None)
    return {**env, "OCRFLUX_HOME": str(tmp_path / "home"), **extra}


def _ocrflux(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocrflux.cli", *args],
        cwd=REPO_ROOT,
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The failure's stderr, which must be exactly one line and no traceback."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture
def pdf(tmp_path: Path) -> Path:
    path = tmp_path / "letter.pdf"
    path.write_bytes(pdf_with_lines([["Dear reader, this is the text layer."]]))
    return path


# --- --version ---------------------------------------------------------------------------------


def test_version_is_the_package_metadata(tmp_path: Path) -> None:
    done = _ocrflux(tmp_path, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"ocrflux {version('ocrflux-stream')}\n"


def test_the_api_reports_the_same_version() -> None:
    from connectors.api import ApiSettings, create_app
    from connectors.api.keys import OPENAPI

    app = create_app(ApiSettings(ocrflux_engine="local"))
    assert app[OPENAPI]["info"]["version"] == version("ocrflux-stream")


# --- exit status 0, 1, 2 and 3 ------------------------------------------------------------------


def test_0_on_success(tmp_path: Path, pdf: Path) -> None:
    done = _ocrflux(tmp_path, "convert", str(pdf), "--engine", "local")
    assert done.returncode == 0, done.stderr
    assert "Dear reader" in done.stdout


def test_1_for_an_input_that_cannot_be_read(tmp_path: Path) -> None:
    done = _ocrflux(tmp_path, "convert", str(tmp_path / "missing.pdf"), "--engine", "local")
    assert done.returncode == 1
    assert "cannot read" in _one_line(done) and "missing.pdf" in done.stderr


def test_1_for_an_output_folder_that_cannot_be_made(tmp_path: Path, pdf: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = _ocrflux(tmp_path, "convert", str(pdf), "-o", str(blocker / "out" / "letter.md"))
    assert done.returncode == 1
    assert "cannot write" in _one_line(done)


@pytest.mark.parametrize("module", ["ocrflux.cli", "ocrflux.document_api_server_remote"])
def test_1_for_a_port_that_is_taken(tmp_path: Path, module: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", module, *(["api"] if module == "ocrflux.cli" else [])],
            cwd=REPO_ROOT,
            env=_env(tmp_path, API_HOST="127.0.0.1", API_PORT=str(port), OCRFLUX_ENGINE="local"),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    assert done.returncode == 1
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("ocrflux api: error:") and str(port) in line
    assert "Traceback" not in done.stderr


def test_1_when_no_local_broker_runs(tmp_path: Path) -> None:
    text = _ocrflux(tmp_path, "broker", "status")
    assert text.returncode == 1 and "no local broker running" in text.stdout
    as_json = _ocrflux(tmp_path, "broker", "status", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout) == {"running": False}


@pytest.mark.kafka
def test_broker_json(tmp_path: Path) -> None:
    started = _ocrflux(tmp_path, "broker", "start", "--json")
    assert started.returncode == 0, started.stderr
    state = json.loads(started.stdout)
    try:
        assert state["running"] is True and state["started"] is True
        status = _ocrflux(tmp_path, "broker", "status", "--json")
        assert status.returncode == 0
        assert json.loads(status.stdout) == {k: v for k, v in state.items() if k != "started"}
        assert state["bootstrap"].startswith("127.0.0.1:") and state["version"].startswith("4.")
    finally:
        stopped = _ocrflux(tmp_path, "broker", "stop", "--json")
    assert json.loads(stopped.stdout) == {"stopped": True, "pid": state["pid"]}
    assert json.loads(_ocrflux(tmp_path, "broker", "stop", "--json").stdout) == {
        "stopped": False,
        "pid": None,
    }


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["convert"], {}, "the following arguments are required: file"),
        (["convert", "x.pdf", "--format", "html"], {}, "invalid choice: 'html'"),
        (["worker", "--roles", "split,paint"], {}, "roles must be a comma-separated subset"),
        (["convert", "x.pdf", "--pages", "5-2"], {}, "expected 1 <= first <= last"),
        (["--log-level", "loud", "convert", "x.pdf"], {}, "invalid choice: 'loud'"),
    ],
)
def test_2_for_a_bad_flag_or_argument(
    tmp_path: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    done = _ocrflux(tmp_path, *args, **env)
    assert done.returncode == 2
    assert expected in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {"OCRFLUX_ENGINE": "gpu"},
            "invalid setting OCRFLUX_ENGINE='gpu': Input should be 'vllm', 'local' or 'auto'",
        ),
        ({"MAX_PAGES": "many"}, "invalid setting MAX_PAGES='many': Input should be a valid int"),
        (
            {"OCRFLUX_MAX_PAGES": "0", "MAX_PAGES": "10"},
            "invalid setting OCRFLUX_MAX_PAGES='0': Input should be greater than or equal to 1",
        ),
        (
            {"OCRFLUX_LOG_LEVEL": "loud"},
            "OCRFLUX_LOG_LEVEL='loud': Input should be 'debug', 'info', 'warning', 'error' or "
            "'critical'",
        ),
        ({"OCRFLUX_SECRETS_DIR": "/nonexistent/secrets"}, "OCRFLUX_SECRETS_DIR=/nonexistent"),
    ],
)
def test_2_for_an_invalid_setting_in_one_line(
    tmp_path: Path, pdf: Path, env: dict[str, str], expected: str
) -> None:
    done = _ocrflux(tmp_path, "convert", str(pdf), "--engine", "local", **env)
    assert done.returncode == 2
    line = _one_line(done)
    assert line.startswith("ocrflux convert: error: ") and expected in line, line


def test_2_when_no_kafka_is_configured(tmp_path: Path) -> None:
    done = _ocrflux(tmp_path, "worker")
    assert done.returncode == 2
    line = _one_line(done)
    assert "KAFKA_BOOTSTRAP_SERVERS" in line and "ocrflux broker start" in line


def test_3_for_a_partial_result(ocrflux_server: Any, tmp_path: Path) -> None:
    case = twelve_page_report()
    keys = register(ocrflux_server, case)
    ocrflux_server.add_fault("invalid_json", task="page", pages=[keys[3]])
    source = tmp_path / "report.pdf"
    source.write_bytes(case.data)
    env = {"VLLM_URL": ocrflux_server.url, "OCRFLUX_ENGINE": "vllm"}
    done = _ocrflux(tmp_path, "convert", str(source), **env)
    assert done.returncode == 3, done.stderr


# --- Kafka: unreachable (1), unreadable submission (1), interrupted (130) -----------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_1_when_kafka_does_not_answer(tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{_closed_port()}"
    done = _ocrflux(tmp_path, "results", KAFKA_BOOTSTRAP_SERVERS=bootstrap)
    assert done.returncode == 1
    line = _one_line(done)
    assert line.startswith("ocrflux results: error:") and bootstrap in line
    assert "KAFKA_BOOTSTRAP_SERVERS" in line


@pytest.mark.kafka
def test_1_for_a_file_submit_cannot_read(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.kafka_bootstrap_servers,
        "OCRFLUX_TOPIC_PREFIX": kafka_settings.ocrflux_topic_prefix,
        "OCRFLUX_BLOB_DIR": str(tmp_path / "blobs"),
    }
    done = _ocrflux(tmp_path, "submit", str(tmp_path / "missing.pdf"), **env)
    assert done.returncode == 1  # as `ocrflux convert` does for the same file
    assert "cannot read" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.kafka
def test_130_when_interrupted(kafka_settings: KafkaSettings, tmp_path: Path) -> None:
    produce(
        kafka_settings,
        kafka_settings.topics.results,
        [("d1", ResultRecord(doc_id="d1", status="completed", num_pages=1))],
    )
    env = _env(
        tmp_path,
        KAFKA_BOOTSTRAP_SERVERS=kafka_settings.kafka_bootstrap_servers,
        OCRFLUX_TOPIC_PREFIX=kafka_settings.ocrflux_topic_prefix,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "ocrflux.cli", "results", "--follow"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()  # following: the result on the topic is printed
        assert first.startswith("d1 "), first
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr


# --- --debug ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "env"),
    [(["--debug"], {}), ([], {"OCRFLUX_LOG_LEVEL": "debug"}), ([], {"OCRFLUX_LOG_LEVEL": "DEBUG"})],
)
def test_debug_shows_the_traceback(
    tmp_path: Path, pdf: Path, flags: list[str], env: dict[str, str]
) -> None:
    done = _ocrflux(tmp_path, *flags, "convert", str(pdf), OCRFLUX_ENGINE="gpu", **env)
    assert done.returncode == 2
    assert "invalid setting OCRFLUX_ENGINE='gpu'" in done.stderr
    assert "Traceback" in done.stderr and "ValidationError" in done.stderr


def test_debug_after_the_command_counts_too(tmp_path: Path, pdf: Path) -> None:
    done = _ocrflux(tmp_path, "convert", str(pdf), "--debug", OCRFLUX_ENGINE="gpu")
    assert done.returncode == 2 and "Traceback" in done.stderr


# --- the parser and its help -------------------------------------------------------------------


COMMANDS = ["convert", "worker", "broker", "submit", "results", "cancel", "api", "connector"]


def test_every_command_documents_its_exit_status_and_log_flags() -> None:
    parser, handlers = build_parser()
    assert sorted(handlers) == sorted(COMMANDS)
    top = parser.format_help()
    assert "exit status" in top and "130  interrupted" in top and "--version" in top
    for name in COMMANDS:
        text = _subparser(parser, name).format_help()
        assert "exit status:" in text, name
        for code in ("  0 ", "  1 ", "  2 "):
            assert code in text, (name, code)
        assert "--log-level LEVEL" in text and "--debug" in text, name
        assert "--loglevel" not in text, name


def _subparser(parser: Any, name: str) -> Any:
    for action in parser._actions:
        if getattr(action, "choices", None) and name in action.choices:
            return action.choices[name]
    raise AssertionError(f"no command {name}")


def test_worker_keeps_the_old_loglevel_flag() -> None:
    parser, _ = build_parser()
    for old, new in [("crit", "critical"), ("warn", "warning"), ("info", "info")]:
        assert parser.parse_args(["worker", "--loglevel", old]).log_level == new
    assert parser.parse_args(["worker", "--log-level", "ERROR"]).log_level == "error"
    assert parser.parse_args(["--log-level", "debug", "worker"]).log_level == "debug"
    assert parser.parse_args(["--debug", "worker"]).debug is True


def test_connector_flags_are_real_subcommands(tmp_path: Path) -> None:
    listed = _ocrflux(tmp_path, "connector", "--help")
    assert listed.returncode == 0
    assert "s3-source" in listed.stdout and "s3-sink" in listed.stdout
    source = _ocrflux(tmp_path, "connector", "s3-source", "--help")
    assert "--bucket" in source.stdout and "--discovery {list,sqs}" in source.stdout
    assert "exit status:" in source.stdout and "--log-level" in source.stdout
    wrong = _ocrflux(tmp_path, "connector", "s3-source", "--no-such-flag")
    assert wrong.returncode == 2 and "unrecognized arguments: --no-such-flag" in wrong.stderr
    unset = _ocrflux(tmp_path, "connector", "s3-sink", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9")
    assert unset.returncode == 2
    assert "OCRFLUX_S3_BUCKET: Field required" in _one_line(unset)


def test_the_top_level_help_does_not_load_the_connectors() -> None:
    """`ocrflux --help` lists every command without importing the connectors' code (slow)."""
    code = (
        "import sys, ocrflux.cli; p, _ = ocrflux.cli.build_parser(); p.format_help(); "
        "print('connectors.s3' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_exit_codes_by_result_status() -> None:
    assert exit_for_status("completed", allow_partial=False) == EXIT_OK
    assert exit_for_status("partial", allow_partial=False) == EXIT_PARTIAL
    assert exit_for_status("partial", allow_partial=True) == EXIT_OK
    assert exit_for_status("failed", allow_partial=True) == EXIT_FAILED
    assert exit_for_status("cancelled", allow_partial=True) == EXIT_FAILED
