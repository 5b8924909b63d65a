"""Settings and flags of the S3 connector (no servers)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from connectors.s3.cli import build_parser, main, settings_from_args
from connectors.s3.settings import (
    DEFAULT_SUFFIXES,
    S3SinkSettings,
    S3SourceSettings,
    parse_size,
)

KAFKA = {"kafka_bootstrap_servers": "127.0.0.1:9"}


@pytest.mark.parametrize(
    ("text", "size"),
    [("123", 123), ("64K", 65536), ("1.5M", 1572864), ("2GiB", 2 * 1024**3), ("10mb", 10485760)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_a_bad_size_is_refused() -> None:
    with pytest.raises(ValueError, match="not a size"):
        parse_size("ten megabytes")


def test_source_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCRFLUX_S3_BUCKET", "docs-bucket")
    monkeypatch.setenv("OCRFLUX_S3_SUFFIXES", ".PDF, .png")
    monkeypatch.setenv("OCRFLUX_S3_MAX_SIZE", "200M")
    monkeypatch.setenv("OCRFLUX_S3_SECRET_ACCESS_KEY", "s3cr3t")
    settings = S3SourceSettings(**KAFKA)
    assert settings.ocrflux_s3_bucket == "docs-bucket"
    assert settings.ocrflux_s3_suffixes == (".pdf", ".png")
    assert settings.ocrflux_s3_max_size == 200 * 1024**2
    assert settings.ocrflux_s3_min_size == 1
    assert "s3cr3t" not in repr(settings)
    assert settings.client_args() == {"aws_secret_access_key": "s3cr3t"}


def test_defaults_leave_the_connection_to_botocore() -> None:
    settings = S3SourceSettings(ocrflux_s3_bucket="abc", **KAFKA)
    assert settings.client_args() == {}
    assert settings.ocrflux_s3_suffixes == DEFAULT_SUFFIXES
    assert ".pdf" in DEFAULT_SUFFIXES and ".md" not in DEFAULT_SUFFIXES


def test_the_transactional_id_is_stable_per_bucket_and_prefix() -> None:
    one = S3SourceSettings(ocrflux_s3_bucket="abc", ocrflux_s3_prefix="in/", **KAFKA)
    same = S3SourceSettings(ocrflux_s3_bucket="abc", ocrflux_s3_prefix="in/", **KAFKA)
    other = S3SourceSettings(ocrflux_s3_bucket="abc", ocrflux_s3_prefix="out/", **KAFKA)
    assert one.transactional_id == same.transactional_id != other.transactional_id
    named = S3SourceSettings(ocrflux_s3_bucket="abc", ocrflux_s3_instance_id="mine", **KAFKA)
    assert named.transactional_id == "mine"


def test_the_sqs_endpoint_defaults_to_the_s3_endpoint() -> None:
    settings = S3SourceSettings(
        ocrflux_s3_bucket="abc", ocrflux_s3_endpoint_url="http://127.0.0.1:1", **KAFKA
    )
    assert settings.sqs_endpoint_url == "http://127.0.0.1:1"
    assert settings.client_args(settings.sqs_endpoint_url)["endpoint_url"] == "http://127.0.0.1:1"


def test_sink_group_and_prefix() -> None:
    settings = S3SinkSettings(ocrflux_s3_bucket="abc", ocrflux_s3_out_prefix="/out/", **KAFKA)
    assert settings.out_prefix == "out"
    assert settings.group_id == "ocrflux-s3-sink.abc.out"


def test_flags_override_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    monkeypatch.setenv("OCRFLUX_S3_BUCKET", "from-env")
    flags = ["s3-source", "--bucket", "from-flag", "--suffix", ".pdf", "--suffix", ".TIF"]
    flags += ["--min-size", "1K", "--discovery", "sqs", "--queue-url", "http://q"]
    settings = settings_from_args(build_parser().parse_args(flags))
    assert isinstance(settings, S3SourceSettings)
    assert settings.ocrflux_s3_bucket == "from-flag"
    assert settings.ocrflux_s3_suffixes == (".pdf", ".tif")
    assert settings.ocrflux_s3_min_size == 1024
    assert settings.ocrflux_s3_queue_url == "http://q"
    anything = settings_from_args(build_parser().parse_args([*flags, "--any-suffix"]))
    assert isinstance(anything, S3SourceSettings)
    assert anything.ocrflux_s3_suffixes == ()
    sink = settings_from_args(build_parser().parse_args(["s3-sink", "--format", "text"]))
    assert isinstance(sink, S3SinkSettings)
    assert sink.ocrflux_s3_bucket == "from-env" and sink.ocrflux_s3_format == "text"
    chunks = settings_from_args(
        build_parser().parse_args(["s3-sink", "--format", "chunks", "--chunk-tokens", "256"])
    )
    assert isinstance(chunks, S3SinkSettings)
    assert chunks.ocrflux_s3_format == "chunks" and chunks.ocrflux_s3_chunk_tokens == 256


def test_usage_errors_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")
    monkeypatch.delenv("OCRFLUX_S3_BUCKET", raising=False)
    assert main(["s3-source"]) == 2
    assert "OCRFLUX_S3_BUCKET: Field required" in capsys.readouterr().err
    assert main(["s3-source", "--bucket", "abc", "--discovery", "sqs"]) == 2
    assert "needs --queue-url" in capsys.readouterr().err
    assert main(["s3-source", "--bucket", "abc", "--max-size", "lots"]) == 2
    assert "not a size" in capsys.readouterr().err


def test_invalid_values_are_validation_errors() -> None:
    with pytest.raises(ValidationError):
        S3SourceSettings(ocrflux_s3_bucket="abc", ocrflux_s3_discovery="watch", **KAFKA)
