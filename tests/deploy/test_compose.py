"""docker-compose.yml and the Dockerfile, checked against the deployment guide and our settings.

Where Docker's compose plugin exists, `docker compose config` must accept the file (it runs on
the client: no engine needed). Everywhere, the file is also parsed here, with compose's
`${VAR:-default}` interpolation, and its services, healthchecks, GPU reservation, log rotation
and environment are compared with the guide, with the start scripts and with the settings
classes that read the variables.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.kafka_broker import DEFAULT_MESSAGE_MAX_BYTES, kafka_version
from streams.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
BASH = shutil.which("bash") or "/bin/bash"

LONG_RUNNING = ("kafka", "vllm", "redis", "minio", "worker", "api")

#: Variables the API reads besides the settings the workers share (issue 6, the guide).
API_ONLY_VARIABLES = {"API_HOST", "API_PORT", "OCRFLUX_MODE", "API_KEYS", "REDIS_URL"}

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}|\$\$")
_DURATION = re.compile(r"^(\d+(\.\d+)?(us|ms|s|m|h))+$")


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation of `${VAR}`, `${VAR:-default}`, `${VAR-default}` and `$$`."""
    if isinstance(value, dict):
        return {key: _interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [_interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, colon, kind, default = match.groups()
        current = env.get(name)
        missing = current is None or (colon == ":" and current == "")
        if kind == "-" and missing:
            return default
        if kind == "?" and missing:
            raise AssertionError(f"${{{name}}} is required: {default}")
        return current or ""

    return _VARIABLE.sub(substitute, value)


def load_compose(**env: str) -> dict[str, Any]:
    """docker-compose.yml as compose sees it with these variables set (and no others)."""
    raw = yaml.safe_load(COMPOSE_FILE.read_text())  # safe_load resolves `<<` merge keys
    assert isinstance(raw, dict)
    return _interpolate(raw, env)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


def _service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    return compose["services"][name]  # type: ignore[no-any-return]


def _compose_command() -> list[str] | None:
    """`docker compose` (the plugin) or a standalone compose v2, if this machine has one."""
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        probe = subprocess.run(
            ["docker-compose", "version"], capture_output=True, text=True, check=False
        )
        if probe.returncode == 0 and re.search(r"v?2\.\d+", probe.stdout):
            return ["docker-compose"]
    return None


# --- the file is valid ------------------------------------------------------------------------


def _check_structure(compose: dict[str, Any]) -> None:
    """What `docker compose config` would reject, for machines without the compose plugin."""
    allowed_top = {"name", "services", "volumes", "networks", "configs", "secrets"}
    for key in compose:
        assert key in allowed_top or key.startswith("x-"), f"unknown top-level key {key}"
    services = compose["services"]
    declared_volumes = set(compose.get("volumes") or {})
    for name, service in services.items():
        assert "image" in service or "build" in service, f"{name}: no image and no build"
        for target, condition in (service.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert condition["condition"] in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in services[target], f"{target} has no healthcheck"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith((".", "/", "~")):
                assert source in declared_volumes, f"{name}: undeclared volume {source}"
        check = service.get("healthcheck")
        if check:
            test = check["test"]
            assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), test
            for key in ("interval", "timeout", "start_period"):
                if key in check:
                    assert _DURATION.match(str(check[key])), f"{name}: bad {key} {check[key]}"
            assert int(check.get("retries", 3)) > 0
        for port in service.get("ports", []):
            assert re.fullmatch(r"((\d+\.){3}\d+:)?\d+:\d+", str(port)), f"{name}: port {port}"
        environment = service.get("environment") or {}
        assert isinstance(environment, dict), f"{name}: environment must be a mapping"
        for key, value in environment.items():
            assert value is None or isinstance(value, str | int | float | bool), (name, key)


def test_compose_file_is_valid() -> None:
    """`docker compose config` where the compose plugin exists, else the structural check."""
    command = _compose_command()
    if command is not None:
        result = subprocess.run(
            [*command, "-f", str(COMPOSE_FILE), "config", "--quiet"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
    else:
        _check_structure(load_compose())
        _check_structure(load_compose(TENSOR_PARALLEL_SIZE="2", OCRFLUX_WORKERS="4"))


def test_structure_check_catches_mistakes() -> None:
    """The fallback check is not a rubber stamp."""
    broken = load_compose()
    del broken["services"]["redis"]["healthcheck"]
    with pytest.raises(AssertionError, match="redis has no healthcheck"):
        _check_structure(broken)
    broken = load_compose()
    broken["services"]["worker"]["depends_on"]["kafak"] = {"condition": "service_healthy"}
    with pytest.raises(AssertionError, match="unknown service kafak"):
        _check_structure(broken)


# --- every service ------------------------------------------------------------------------------


def test_all_services_are_there(compose: dict[str, Any]) -> None:
    assert set(LONG_RUNNING) <= set(compose["services"])


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if service.get("restart") == "no":
            # A one-shot job: others wait for it to finish, not to be healthy.
            for other in compose["services"].values():
                condition = (other.get("depends_on") or {}).get(name)
                if condition:
                    assert condition["condition"] == "service_completed_successfully"
            continue
        assert service.get("restart") == "unless-stopped", name
        check = service.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name}: no healthcheck"
        assert len(" ".join(check["test"][1:])) > 0


def test_every_service_rotates_its_logs(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        logging = service.get("logging")
        assert logging, f"{name} has no logging section"
        assert logging["driver"] == "json-file"
        assert re.fullmatch(r"\d+[kmg]", logging["options"]["max-size"]), name
        assert int(logging["options"]["max-file"]) >= 1, name


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            continue  # ours, built from the Dockerfile
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: unpinned {image}"


# --- Kafka ----------------------------------------------------------------------------------------


def test_kafka_is_a_single_kraft_node_of_our_version(compose: dict[str, Any]) -> None:
    kafka = _service(compose, "kafka")
    assert kafka["image"] == f"apache/kafka:{kafka_version()}"  # the local recipe's version
    env = kafka["environment"]
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:29093"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", env["CLUSTER_ID"])
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert "kafka-data:/var/lib/kafka/data" in kafka["volumes"]
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= DEFAULT_MESSAGE_MAX_BYTES
    assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == 1
    test = " ".join(kafka["healthcheck"]["test"])
    assert "/opt/kafka/bin/kafka-broker-api-versions.sh" in test


def test_clients_use_an_advertised_listener(compose: dict[str, Any]) -> None:
    advertised = _service(compose, "kafka")["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    addresses = {item.split("://", 1)[1] for item in advertised.split(",")}
    assert "localhost:9092" in addresses  # clients on the host
    for name in ("worker", "api"):
        env = _service(compose, name)["environment"]
        assert env["KAFKA_BOOTSTRAP_SERVERS"] in addresses, name
        assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) == DEFAULT_MESSAGE_MAX_BYTES


# --- vLLM -----------------------------------------------------------------------------------------


def test_vllm_serves_ocrflux_on_a_reserved_gpu(compose: dict[str, Any]) -> None:
    vllm = _service(compose, "vllm")
    assert vllm["image"].startswith("vllm/vllm-openai:v")
    (device,) = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia"
    assert device["capabilities"] == ["gpu"]
    assert str(device["count"]) == "1"
    assert "hf-cache:/root/.cache/huggingface" in vllm["volumes"]
    assert "hf-cache" in compose["volumes"]
    assert vllm["command"] == ["ChatDOC/OCRFlux-3B", "8003"]
    test = " ".join(vllm["healthcheck"]["test"])
    assert "http://127.0.0.1:8003/health" in test


def test_vllm_gpus_follow_tensor_parallel_size() -> None:
    vllm = _service(load_compose(TENSOR_PARALLEL_SIZE="2"), "vllm")
    (device,) = vllm["deploy"]["resources"]["reservations"]["devices"]
    assert str(device["count"]) == "2"
    assert vllm["environment"]["TENSOR_PARALLEL_SIZE"] == "2"


def test_hf_cache_can_be_a_host_folder() -> None:
    vllm = _service(load_compose(HF_CACHE_DIR="/srv/hf"), "vllm")
    assert "/srv/hf:/root/.cache/huggingface" in vllm["volumes"]


def _vllm_argv(tmp_path: Path, service: dict[str, Any]) -> list[str]:
    """What the vllm container runs: its entrypoint script with its command and environment,
    with a stand-in `vllm` that prints its arguments."""
    mounts = dict(volume.split(":")[1::-1] for volume in service["volumes"])
    entrypoint = service["entrypoint"]
    assert entrypoint[0] == "bash"
    script = ROOT / mounts[entrypoint[1]].removeprefix("./")
    assert script == ROOT / "deploy" / "start_vllm_a100.sh"
    stub = tmp_path / "vllm"
    stub.write_text('#!/bin/sh\nfor arg in "$@"; do echo "$arg"; done\n')
    stub.chmod(0o755)
    env = {"PATH": os.environ.get("PATH", ""), "VLLM_BIN": str(stub)}
    env.update({k: str(v) for k, v in service["environment"].items() if v is not None})
    result = subprocess.run(
        [BASH, str(script), *service["command"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_vllm_container_runs_the_start_script_with_busy_defaults(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    argv = _vllm_argv(tmp_path, _service(compose, "vllm"))
    assert argv[:2] == ["serve", "ChatDOC/OCRFlux-3B"]
    flags = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert flags["--host"] == "0.0.0.0"
    assert flags["--port"] == "8003"
    assert flags["--served-model-name"] == "ChatDOC/OCRFlux-3B"
    assert flags["--max-model-len"] == "32768"
    assert flags["--gpu-memory-utilization"] == "0.95"
    assert int(flags["--max-num-seqs"]) == 256
    assert int(flags["--max-num-batched-tokens"]) == 16384
    assert "--use-v2-block-manager" not in argv
    assert "--dtype" not in argv  # empty DTYPE: vLLM's own choice


def test_vllm_container_takes_the_guides_overrides(tmp_path: Path) -> None:
    compose = load_compose(
        MAX_NUM_SEQS="512", DTYPE="bfloat16", ENABLE_PREFIX_CACHING="false", MODEL_NAME="ocrflux"
    )
    argv = _vllm_argv(tmp_path, _service(compose, "vllm"))
    assert argv[argv.index("--max-num-seqs") + 1] == "512"
    assert argv[argv.index("--dtype") + 1] == "bfloat16"
    assert argv[argv.index("--served-model-name") + 1] == "ocrflux"
    assert "--no-enable-prefix-caching" in argv
    for name in ("worker", "api"):  # they ask for the model under the same name
        assert _service(compose, name)["environment"]["MODEL_NAME"] == "ocrflux"


# --- Redis and MinIO ------------------------------------------------------------------------------


def test_redis_and_minio_healthchecks(compose: dict[str, Any]) -> None:
    assert _service(compose, "redis")["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert _service(compose, "minio")["healthcheck"]["test"] == ["CMD", "mc", "ready", "local"]


def test_blob_bucket_and_credentials_match_minio(compose: dict[str, Any]) -> None:
    minio = _service(compose, "minio")["environment"]
    setup = _service(compose, "minio-setup")
    assert setup["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "mc mb --ignore-existing" in " ".join(setup["command"])
    for name in ("worker", "api"):
        env = _service(compose, name)["environment"]
        assert env["OCRFLUX_BLOB_URL"].startswith(f"s3://{setup['environment']['MINIO_BUCKET']}/")
        assert env["AWS_ENDPOINT_URL"] == "http://minio:9000"
        assert env["AWS_ACCESS_KEY_ID"] == minio["MINIO_ROOT_USER"]
        assert env["AWS_SECRET_ACCESS_KEY"] == minio["MINIO_ROOT_PASSWORD"]
        assert len(minio["MINIO_ROOT_PASSWORD"]) >= 8  # MinIO refuses shorter ones


# --- workers and API ------------------------------------------------------------------------------


def _vllm_port(compose: dict[str, Any]) -> str:
    return str(_service(compose, "vllm")["command"][1])


def test_workers_point_at_kafka_vllm_and_minio(compose: dict[str, Any]) -> None:
    worker = _service(compose, "worker")
    assert worker["build"] == "."
    assert worker["command"] == ["worker"]
    assert int(worker["deploy"]["replicas"]) >= 1
    env = worker["environment"]
    assert env["VLLM_URL"] == "http://vllm"
    assert env["VLLM_PORT"] == _vllm_port(compose)
    assert env["OCRFLUX_ENGINE"] == "vllm"
    vllm_env = _service(compose, "vllm")["environment"]
    assert env["MODEL_NAME"] == vllm_env["MODEL_NAME"]
    assert env["MODEL_MAX_LEN"] == vllm_env["MAX_MODEL_LEN"]  # table merges fit the context
    depends = worker["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["vllm"]["condition"] == "service_healthy"
    port = env["OCRFLUX_METRICS_PORT"]
    assert env["OCRFLUX_METRICS_HOST"] == "0.0.0.0"
    assert f"127.0.0.1:{port}/metrics" in " ".join(worker["healthcheck"]["test"])


def test_workers_keep_pages_queued_past_the_gpu_batch(compose: dict[str, Any]) -> None:
    """With the merge on, detections share vLLM's queue: about 3 x its batch in pages keeps the
    pages from being held back (bench/harness.py, WORKER_ENV)."""
    env = _service(compose, "worker")["environment"]
    replicas = int(_service(compose, "worker")["deploy"]["replicas"])
    max_num_seqs = int(_service(compose, "vllm")["environment"]["MAX_NUM_SEQS"])
    pages = int(env["OCRFLUX_RECOGNIZE_CONCURRENCY"])
    assert replicas * pages >= 3 * max_num_seqs
    merges = int(
        env.get(
            "OCRFLUX_MERGE_CONCURRENCY",
            WorkerSettings.model_fields["ocrflux_merge_concurrency"].default,
        )
    )
    assert int(env["VLLM_MAX_INFLIGHT"]) >= pages + merges


def test_worker_variables_are_settings_the_worker_reads(compose: dict[str, Any]) -> None:
    fields = set(WorkerSettings.model_fields)
    for key in _service(compose, "worker")["environment"]:
        if key.startswith("AWS_"):
            continue  # botocore's own chain (streams.blobstore.s3)
        assert key.lower() in fields, f"the worker has no setting {key}"


def test_api_runs_the_guides_entry_in_kafka_mode(compose: dict[str, Any]) -> None:
    api = _service(compose, "api")
    assert api["entrypoint"] == ["python", "-m", "ocrflux.document_api_server_remote"]
    env = api["environment"]
    assert env["OCRFLUX_MODE"] == "kafka"
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    assert env["API_HOST"] == "0.0.0.0"
    assert env["API_PORT"] == "8001"
    assert env["VLLM_URL"] == "http://vllm"
    assert env["VLLM_PORT"] == _vllm_port(compose)
    assert env["MODEL_NAME"] == "ChatDOC/OCRFlux-3B"
    assert env["MAX_PAGE_RETRIES"] == "1"
    assert env["SKIP_CROSS_PAGE_MERGE"] == "false"
    assert "API_KEYS" in env and env["API_KEYS"] is None  # passed through from the shell
    assert "8001:8001" in api["ports"]
    assert "http://127.0.0.1:8001/health" in " ".join(api["healthcheck"]["test"])
    for dependency in ("kafka", "redis"):
        assert api["depends_on"][dependency]["condition"] == "service_healthy"
    fields = set(WorkerSettings.model_fields)
    for key in env:
        assert key.startswith("AWS_") or key in API_ONLY_VARIABLES or key.lower() in fields, key


def test_api_port_can_be_published_elsewhere() -> None:
    assert "9001:8001" in _service(load_compose(API_PUBLISHED_PORT="9001"), "api")["ports"]


# --- Dockerfile -----------------------------------------------------------------------------------


def test_dockerfile_builds_a_slim_non_root_image_without_vllm() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, re.M)
    assert "pip install -c requirements.lock ." in text  # the versions the tests passed with
    assert "[vllm]" not in text and "[dev" not in text
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert 'ENTRYPOINT ["ocrflux"]' in text
    assert "OCRFLUX_HOME=" in text  # state outside site-packages


def test_dockerignore_keeps_the_context_small() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".venv", ".cache", ".git", "tests"} <= ignored
    assert "README.md" not in ignored  # pyproject's readme, needed by the build
    assert "requirements.lock" not in ignored
