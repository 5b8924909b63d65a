"""The settings base every process's settings inherit (`ocrflux.settings.OcrfluxSettings`): our
unprefixed names also answer to `OCRFLUX_<NAME>` (which wins), the deployment guide's names stay
as they are, and secrets can come from files in `OCRFLUX_SECRETS_DIR`."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from pydantic_settings import SettingsError

from connectors.api.settings import ApiSettings
from connectors.s3.settings import S3SourceSettings
from ocrflux.failures import validation_problems
from ocrflux.settings import CoreSettings
from streams.kafka import KafkaSettings
from streams.settings import WorkerSettings

#: Ours and unprefixed: (variable, settings class, field, a valid value).
OURS = [
    ("PAGE_CONCURRENCY", CoreSettings, "page_concurrency", 7),
    ("MAX_FILE_BYTES", CoreSettings, "max_file_bytes", 1234),
    ("MAX_PAGES", CoreSettings, "max_pages", 12),
    ("MODEL_MAX_LEN", CoreSettings, "model_max_len", 4096),
    ("VLLM_REQUEST_TIMEOUT_S", CoreSettings, "vllm_request_timeout_s", 9.5),
    ("VLLM_MAX_TOKENS", CoreSettings, "vllm_max_tokens", 100),
    ("VLLM_MAX_INFLIGHT", CoreSettings, "vllm_max_inflight", 3),
    ("VLLM_RETRY_BUDGET_S", CoreSettings, "vllm_retry_budget_s", 4.0),
    ("VLLM_HEALTH_INTERVAL_S", CoreSettings, "vllm_health_interval_s", 2.0),
    ("KAFKA_MESSAGE_MAX_BYTES", KafkaSettings, "kafka_message_max_bytes", 2048),
    ("KAFKA_TOPIC_PARTITIONS", KafkaSettings, "kafka_topic_partitions", 6),
    ("KAFKA_REPLICATION_FACTOR", KafkaSettings, "kafka_replication_factor", 3),
    ("KAFKA_DELIVERY_TIMEOUT_S", KafkaSettings, "kafka_delivery_timeout_s", 5.0),
]

#: The deployment guide's names: exactly these, no prefixed spelling.
GUIDE = [
    ("VLLM_URL", "vllm_url", "http://gpu-1"),
    ("VLLM_PORT", "vllm_port", 9000),
    ("API_PORT", "api_port", 8123),
    ("API_HOST", "api_host", "127.0.0.2"),
    ("MAX_PAGE_RETRIES", "max_page_retries", 3),
    ("SKIP_CROSS_PAGE_MERGE", "skip_cross_page_merge", True),
    ("MODEL_NAME", "model_name", "local/ocrflux"),
]


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    names = [name for name, *_ in OURS] + [name for name, *_ in GUIDE]
    names += ["API_KEYS", "REDIS_URL", "KAFKA_SASL_PASSWORD", "OCRFLUX_SECRETS_DIR"]
    for name in list(os.environ):
        if name.removeprefix("OCRFLUX_") in names or name.startswith("OCRFLUX_S3_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")


@pytest.mark.parametrize(("name", "cls", "field", "value"), OURS)
def test_ours_answer_to_both_names_and_the_prefixed_one_wins(
    monkeypatch: pytest.MonkeyPatch, name: str, cls: type, field: str, value: object
) -> None:
    default = getattr(cls(), field)
    monkeypatch.setenv(name, str(value))
    assert getattr(cls(), field) == value
    monkeypatch.delenv(name)
    monkeypatch.setenv(f"OCRFLUX_{name}", str(value))
    assert getattr(cls(), field) == value
    monkeypatch.setenv(name, str(default))
    assert getattr(cls(), field) == value  # both set: OCRFLUX_ wins
    assert getattr(cls(**{field: default}), field) == default  # a keyword (a flag) wins over both


@pytest.mark.parametrize("name", ["API_KEYS", "REDIS_URL"])
def test_the_api_secrets_answer_to_both_names(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    field = name.lower()
    monkeypatch.setenv(name, "plain")
    assert getattr(ApiSettings(), field).get_secret_value() == "plain"
    monkeypatch.setenv(f"OCRFLUX_{name}", "prefixed")
    assert getattr(ApiSettings(), field).get_secret_value() == "prefixed"


def test_the_worker_and_the_api_inherit_the_prefixed_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OCRFLUX_MAX_PAGES", "9")
    monkeypatch.setenv("MAX_PAGES", "3")
    assert WorkerSettings().max_pages == 9 and ApiSettings().max_pages == 9


@pytest.mark.parametrize(("name", "field", "value"), GUIDE)
def test_the_guides_names_stay_as_they_are(
    monkeypatch: pytest.MonkeyPatch, name: str, field: str, value: object
) -> None:
    monkeypatch.setenv(f"OCRFLUX_{name}", str(value))
    assert getattr(ApiSettings(), field) != value  # no prefixed spelling
    monkeypatch.setenv(name, str(value))
    assert getattr(ApiSettings(), field) == value


def test_an_error_names_the_variable_that_was_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_PAGES", "lots")
    with pytest.raises(ValidationError) as plain:
        CoreSettings()
    assert validation_problems(plain.value).startswith("MAX_PAGES='lots': ")
    monkeypatch.setenv("OCRFLUX_MAX_PAGES", "0")
    with pytest.raises(ValidationError) as prefixed:
        CoreSettings()
    assert validation_problems(prefixed.value).startswith("OCRFLUX_MAX_PAGES='0': ")


# --- secrets from files ------------------------------------------------------------------------


def _secrets(folder: Path, **files: str) -> Path:
    folder.mkdir()
    for name, value in files.items():
        (folder / name).write_text(value + "\n")  # as `echo secret > file` leaves it
    return folder


def test_secrets_come_from_files_in_the_secrets_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = _secrets(
        tmp_path / "secrets",
        API_KEYS="k1,k2",
        redis_url="redis://:pw@cache:6379/0",  # Kubernetes keys are often lower case
        KAFKA_SASL_PASSWORD="sasl-pw",
        OCRFLUX_S3_SECRET_ACCESS_KEY="s3-secret",
        OCRFLUX_S3_ACCESS_KEY_ID="s3-id",
    )
    monkeypatch.setenv("OCRFLUX_SECRETS_DIR", str(folder))
    api = ApiSettings()
    assert api.keys == {"k1", "k2"}
    assert api.redis_url is not None
    assert api.redis_url.get_secret_value() == "redis://:pw@cache:6379/0"
    assert KafkaSettings().as_librdkafka_dict()["sasl.password"] == "sasl-pw"
    s3 = S3SourceSettings(ocrflux_s3_bucket="bucket")
    assert s3.client_args()["aws_secret_access_key"] == "s3-secret"
    assert s3.client_args()["aws_access_key_id"] == "s3-id"
    monkeypatch.setenv("API_KEYS", "from-env")
    assert ApiSettings().keys == {"from-env"}  # the environment wins over a file


def test_no_secrets_dir_no_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _secrets(tmp_path / "secrets", API_KEYS="k1")
    monkeypatch.chdir(tmp_path)
    assert ApiSettings().keys == frozenset()


def test_a_secrets_dir_that_is_not_a_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OCRFLUX_SECRETS_DIR", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match=r"OCRFLUX_SECRETS_DIR=.*no such folder"):
        CoreSettings()
