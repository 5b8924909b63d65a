"""The S3 sink's figures (issue 14): each figure a result refers to is fetched and written beside
the Markdown as `<stem>_figures/<name>`, the links rewritten to it; end to end from a bucket
through the source, the stream processor and the sink, with `--figures crop` (the default) and
`--figures none`."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from connectors.s3.cli import build_parser, settings_from_args
from connectors.s3.figures import figure_objects, written_figure_keys
from connectors.s3.settings import S3SinkSettings, S3SourceSettings
from ocrflux.convert import convert_document
from ocrflux.engines.vllm import VllmEngine
from ocrflux.figures import FIGURE_UNAVAILABLE, figure_bytes
from ocrflux.vllm_client import VllmClient
from schemas.options import ConversionOptions
from schemas.records import ResultRecord
from streams.blobstore import BlobFetcher, BlobSettings, FileBlobStore
from streams.kafka import KafkaSettings
from tests.connectors.fixtures import S3Endpoint, produce
from tests.connectors.s3.fixtures import (
    aws_env,
    boto_client,
    kafka_env,
    object_keys,
    process_alive,
    start_connector,
    wait_for,
)
from tests.connectors.s3.test_e2e_rclone import _flags
from tests.connectors.s3.test_sink import _count, _results, _run_sink
from tests.scenarios import (
    FIGURE_NAME,
    FIGURE_TEXT,
    FIGURE_TEXT_WITHOUT,
    assert_is_the_drawn_figure,
    figure_document,
    register,
)
from tests.streams.fixtures import Pipeline

LINK = f"figures.pdf_figures/{FIGURE_NAME}"


async def _stream_result(server: Any, blob_dir: Path, key: str) -> ResultRecord:
    """`figure_document`'s result as the stream processor sends it: each figure's PNG in the
    blob store (`file://` under `blob_dir`), referred to by `ref`, none inline."""
    case = figure_document()
    register(server, case)
    async with VllmClient([server.url]) as client:
        engine = VllmEngine(client, model=client.model, max_tokens=8192, model_max_len=16384)
        direct = await convert_document(
            case.data, engine=engine, options=ConversionOptions(figures="crop")
        )
    assert [f.name for f in direct.figures] == [FIGURE_NAME]
    blobs = FileBlobStore(blob_dir)
    figures = []
    for figure in direct.figures:
        png = figure_bytes(figure)
        assert png is not None
        ref = await blobs.put(png, f"figures/{key}/{figure.name}")
        figures.append(figure.model_copy(update={"ref": ref, "data": None}))
    return ResultRecord(
        **{**direct.model_dump(), "figures": figures, "doc_id": key.replace("/", "-")},
        metadata={"s3.bucket": "src", "s3.key": key, "s3.revision": "1"},
    )


def _blob_path(result: ResultRecord) -> Path:
    ref = result.figures[0].ref
    assert ref is not None and ref.startswith("file://")
    return Path(ref.removeprefix("file://"))


async def test_figures_are_fetched_and_linked_beside_the_output(
    ocrflux_server: Any, tmp_path: Path
) -> None:
    result = await _stream_result(ocrflux_server, tmp_path / "blobs", "in/figures.pdf")
    fetcher = BlobFetcher(BlobSettings(ocrflux_blob_dir=tmp_path / "blobs"))
    try:
        found = await figure_objects(result, "out/in/figures.pdf", fetcher)
        assert found.missing == []
        assert list(found.objects) == [f"out/in/{LINK}"]
        assert_is_the_drawn_figure(found.objects[f"out/in/{LINK}"])
        assert found.result.document_text == FIGURE_TEXT.format(link=LINK)
        assert [(f.ref, f.data) for f in found.result.figures] == [(LINK, None)]
        # The .json written from the linked result names the same objects.
        written = found.result.model_dump_json().encode()
        assert written_figure_keys(written, "out/in/figures.pdf") == {f"out/in/{LINK}"}
        assert written_figure_keys(written, "out/in/other.pdf") == set()

        # A PNG that is gone: a warning, the link stays, no object.
        _blob_path(result).unlink()
        found = await figure_objects(result, "figures.pdf", fetcher)
        assert found.objects == {}
        assert [w.code for w in found.missing] == [FIGURE_UNAVAILABLE]
        assert found.result.document_text == FIGURE_TEXT.format(link=LINK)
        assert found.result.warnings[-1] == found.missing[0]
    finally:
        await fetcher.close()


def test_a_result_without_figures_is_left_as_it_is() -> None:
    failed = ResultRecord(doc_id="d", status="failed", metadata={"s3.key": "a.pdf"})
    found = asyncio.run(figure_objects(failed, "out/a.pdf", BlobFetcher()))
    assert found.result is failed and found.objects == {} and found.missing == []
    assert written_figure_keys(None, "out/a.pdf") == set()
    assert written_figure_keys(b"not json", "out/a.pdf") == set()
    outside = {"figures": [{"ref": "../elsewhere.png"}, {"ref": "a.pdf_figures/x/y.png"}]}
    assert written_figure_keys(json.dumps(outside).encode(), "out/a.pdf") == set()


def test_the_source_asks_for_figures_unless_told_not_to(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCRFLUX_S3_BUCKET", "bkt")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")

    def options(*flags: str) -> ConversionOptions:
        settings = settings_from_args(build_parser().parse_args(["s3-source", *flags]))
        assert isinstance(settings, S3SourceSettings)
        return settings.conversion_options

    assert options() == ConversionOptions(figures="crop")
    assert options("--figure-scale", "3") == ConversionOptions(figures="crop", figure_scale=3)
    # none: the options of a source that predates figures (the same doc_ids, old workers).
    assert options("--figures", "none").model_dump_json() == ConversionOptions().model_dump_json()
    monkeypatch.setenv("OCRFLUX_S3_FIGURES", "none")
    assert options() == ConversionOptions()
    with pytest.raises(ValidationError, match="figure scale goes with figures=crop"):
        options("--figure-scale", "3")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["s3-source", "--figures", "inline"])


@pytest.mark.kafka
async def test_the_sink_writes_figures_before_the_markdown_once(
    kafka_settings: KafkaSettings,
    ocrflux_server: Any,
    rclone_s3: S3Endpoint,
    rclone_bucket: str,
    aws_isolation: dict[str, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    blob_dir = tmp_path / "blobs"
    first = await _stream_result(ocrflux_server, blob_dir, "in/figures.pdf")
    lost = await _stream_result(ocrflux_server, blob_dir / "lost", "in/lost.pdf")
    _blob_path(lost).unlink()
    produce(kafka_settings, kafka_settings.topics.results, [("a", first), ("b", lost)])
    settings = S3SinkSettings(
        kafka_bootstrap_servers=kafka_settings.kafka_bootstrap_servers,
        ocrflux_topic_prefix=kafka_settings.ocrflux_topic_prefix,
        ocrflux_s3_bucket=rclone_bucket,
        ocrflux_s3_out_prefix="out",
        ocrflux_blob_dir=blob_dir,
        ocrflux_s3_endpoint_url=rclone_s3.url,
        ocrflux_s3_region=rclone_s3.region,
        ocrflux_s3_access_key_id=rclone_s3.key_id,
        ocrflux_s3_secret_access_key=SecretStr(rclone_s3.secret),
    )
    with caplog.at_level(logging.INFO, logger="connectors.s3.sink"):
        metrics = await _run_sink(settings, lambda m: _results(m) >= 2)
    assert _count(metrics, "written") == 5 and _count(metrics, "unavailable") == 1
    s3 = boto_client(rclone_s3)
    figure_key = f"out/in/{LINK}"
    assert set(object_keys(s3, rclone_bucket)) == {
        "out/in/figures.pdf.md",
        "out/in/figures.pdf.json",
        figure_key,
        "out/in/lost.pdf.md",
        "out/in/lost.pdf.json",
    }
    # In this order: a reader that sees the Markdown finds its figure.
    assert (
        f"to s3://{rclone_bucket}/out/in/figures.pdf{{_figures/{FIGURE_NAME},.md,.json}}"
        in caplog.text
    )
    markdown = s3.get_object(Bucket=rclone_bucket, Key="out/in/figures.pdf.md")["Body"].read()
    assert markdown.decode() == FIGURE_TEXT.format(link=LINK) + "\n"
    png = s3.get_object(Bucket=rclone_bucket, Key=figure_key)
    assert png["ContentType"] == "image/png"
    assert_is_the_drawn_figure(png["Body"].read())
    stored = json.loads(
        s3.get_object(Bucket=rclone_bucket, Key="out/in/figures.pdf.json")["Body"].read()
    )
    assert [(f["ref"], f.get("data")) for f in stored["figures"]] == [(LINK, None)]
    # The figure that could not be fetched: linked all the same, and said so.
    markdown = s3.get_object(Bucket=rclone_bucket, Key="out/in/lost.pdf.md")["Body"].read()
    assert markdown.decode() == FIGURE_TEXT.format(link=f"lost.pdf_figures/{FIGURE_NAME}") + "\n"
    stored = json.loads(
        s3.get_object(Bucket=rclone_bucket, Key="out/in/lost.pdf.json")["Body"].read()
    )
    assert [w["code"] for w in stored["warnings"]] == [FIGURE_UNAVAILABLE]
    assert "figure 1 (page 2) is not available" in caplog.text

    # Delivered again (a new group reads from the start): the same keys, nothing changes.
    again = settings.model_copy(update={"ocrflux_s3_group_id": "again"})
    metrics = await _run_sink(again, lambda m: _results(m) >= 2)
    assert _count(metrics, "written") == 0 and _count(metrics, "unchanged") == 5

    # A newer version without figures removes the older version's figure objects.
    newer = first.model_copy(
        update={
            "doc_id": "newer",
            "status": "failed",
            "figures": [],
            "metadata": {**first.metadata, "s3.revision": "2"},
        }
    )
    produce(kafka_settings, kafka_settings.topics.results, [("newer", newer)])
    metrics = await _run_sink(settings, lambda m: _results(m) >= 1)
    assert _count(metrics, "deleted") == 2  # the Markdown and the figure
    assert set(object_keys(s3, rclone_bucket, "out/in/figures")) == {"out/in/figures.pdf.json"}


@pytest.mark.kafka
def test_figures_from_a_bucket_to_the_bucket(
    pipeline: Pipeline, rclone_s3: S3Endpoint, rclone_bucket: str, aws_isolation: dict[str, str]
) -> None:
    """Two sources on one bucket, one with the default (`--figures crop`), one with
    `--figures none`; the stream processor crops, the sink writes the figure beside the
    Markdown."""
    bucket, case = rclone_bucket, figure_document()
    register(pipeline.server, case)
    s3 = boto_client(rclone_s3)
    processes = pipeline.processes
    worker_env: dict[str, Any] = aws_env(rclone_s3, aws_isolation)
    pipeline.start_worker("worker", **worker_env)
    # The sink reads the figures from the blob store the worker put them in.
    env = {**kafka_env(pipeline.kafka), "OCRFLUX_BLOB_DIR": str(pipeline.blob_dir)}
    started = {
        "sink": start_connector(
            processes,
            "sink",
            ["s3-sink", "--bucket", bucket, "--out-prefix", "results", *_flags(rclone_s3)],
            env,
        )
    }
    for name, extra in (("crop", []), ("none", ["--figures", "none"])):
        args = ["s3-source", "--bucket", bucket, "--prefix", f"{name}/", "--poll-interval", "0.5"]
        started[name] = start_connector(processes, name, [*args, *extra, *_flags(rclone_s3)], env)
    for name, process in started.items():

        def ready(name: str = name) -> bool:
            return "ready:" in processes.log(name)

        wait_for(ready, f"{name} ready", alive=process_alive(processes, name, process))
    for name in ("crop", "none"):
        s3.put_object(Bucket=bucket, Key=f"{name}/figures.pdf", Body=case.data)

    figure_key = f"results/crop/{LINK}"
    expected = {
        f"results/{n}/figures.pdf.{ext}" for n in ("crop", "none") for ext in ("md", "json")
    }
    wait_for(
        lambda: expected | {figure_key} <= set(object_keys(s3, bucket, "results/")),
        "both documents' outputs and the figure",
        alive=process_alive(processes, "sink", started["sink"]),
    )
    assert set(object_keys(s3, bucket, "results/")) == expected | {figure_key}

    def read(key: str) -> bytes:
        return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    assert read("results/crop/figures.pdf.md").decode() == FIGURE_TEXT.format(link=LINK) + "\n"
    assert_is_the_drawn_figure(read(figure_key))
    result = json.loads(read("results/crop/figures.pdf.json"))
    assert result["status"] == "completed" and result["warnings"] == []
    assert [(f["name"], f["ref"]) for f in result["figures"]] == [(FIGURE_NAME, LINK)]
    assert read("results/none/figures.pdf.md").decode() == FIGURE_TEXT_WITHOUT + "\n"
    assert json.loads(read("results/none/figures.pdf.json")).get("figures", []) == []

    for name, process in started.items():
        assert processes.stop(process) == 0, name
        assert "Traceback" not in processes.log(name)
