"""`ocrflux submit --wait` with figures (issue 14), as users run it: a separate process against a
stream-processor worker, the session's broker and the OCRFlux-3B test double. The workers store
each figure in the blob store; submit fetches it by its reference and writes it beside the
output, checked by the pixels of the figure `figure_document` draws."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from schemas.records import DocumentRequest, ResultRecord, decode
from schemas.results import Figure, FigureBox, TextBlock
from streams.kafka import KafkaSettings
from tests.connectors.fixtures import consume, produce
from tests.connectors.test_cli_commands import PDF, TIMEOUT_S, _command, _env
from tests.fixtures.processes import REPO_ROOT
from tests.formats import check_result_json
from tests.scenarios import (
    FIGURE_NAME,
    FIGURE_TEXT,
    FIGURE_TEXT_WITHOUT,
    assert_is_the_drawn_figure,
    figure_document,
    register,
)
from tests.streams.fixtures import Pipeline

pytestmark = pytest.mark.kafka

LOST = "figure-001-page-1.png"


def _submit(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    """`ocrflux submit --wait ARGS` with the workers' Kafka and blob store."""
    return subprocess.run(
        _command("submit", "--wait", "--timeout", "150", *args),
        cwd=REPO_ROOT,
        env=pipeline.env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S + 60,
        check=False,
    )


def test_submit_wait_writes_the_figures_beside_each_output(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    case = figure_document()
    register(pipeline.server, case)
    pipeline.start_worker("worker")
    source = tmp_path / "out.pdf"
    source.write_bytes(case.data)

    done = _submit(pipeline, str(source))  # figures=crop by default
    assert done.returncode == 0, done.stderr + done.stdout
    out = tmp_path / "out.md"
    assert out.read_text() == FIGURE_TEXT.format(link=f"out_figures/{FIGURE_NAME}") + "\n"
    assert [p.name for p in (tmp_path / "out_figures").iterdir()] == [FIGURE_NAME]
    assert_is_the_drawn_figure((tmp_path / "out_figures" / FIGURE_NAME).read_bytes())
    assert f"{source} -> {out} (+1 figure)" in done.stdout

    # As json in --out, at another scale: the result's reference points into the folder.
    folder = tmp_path / "results"
    args = ["--format", "json", "--figure-scale", "3", "--out", str(folder), str(source)]
    done = _submit(pipeline, *args)
    assert done.returncode == 0, done.stderr + done.stdout
    data = check_result_json((folder / "out.json").read_text())
    link = f"out_figures/{FIGURE_NAME}"
    assert data["document_text"] == FIGURE_TEXT.format(link=link)
    [figure] = data["figures"]
    assert figure["ref"] == link and figure.get("data") is None
    assert_is_the_drawn_figure((folder / link).read_bytes(), scale=3)

    # --figures none: left out, no folder, and the record's options stay as before figures.
    plain = tmp_path / "plain"
    plain.mkdir()
    done = _submit(pipeline, "--figures", "none", "--out", str(plain), str(source))
    assert done.returncode == 0, done.stderr + done.stdout
    assert (plain / "out.md").read_text() == FIGURE_TEXT_WITHOUT + "\n"
    assert [p.name for p in plain.iterdir()] == ["out.md"]

    requests = [r for r in pipeline.records("documents") if isinstance(r, DocumentRequest)]
    options = [json.loads(r.options.model_dump_json()) for r in requests]
    figures = sorted((o.get("figures") or "", o.get("figure_scale") or 0) for o in options)
    assert figures == [("", 0), ("crop", 0), ("crop", 3.0)]  # in partition order
    assert "figures" not in next(o for o in options if o.get("figures") is None)


def test_a_figure_that_cannot_be_fetched_is_a_warning(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    source = tmp_path / "lost.pdf"
    source.write_bytes(PDF + b"lost figure")
    text = f"Before.\n\n![Figure 1, page 1](<{LOST}>)"
    missing = f"file://{tmp_path}/blobs/figures/{LOST}"  # in the blob folder, never stored
    figure = Figure(number=1, page=0, name=LOST, box=FigureBox(left=0, top=0, right=1, bottom=1))
    blocks = [
        TextBlock(start=0, end=7, pages=[0]),
        TextBlock(start=9, end=len(text), pages=[0], figure=1),
    ]
    with (tmp_path / "submit.log").open("w+") as log:
        process = subprocess.Popen(
            _command("submit", "--wait", "--timeout", "90", str(source)),
            cwd=REPO_ROOT,
            env=_env(tmp_path, kafka_settings),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        try:  # act as the worker: a result whose figure's reference holds nothing
            [message] = consume(kafka_settings, kafka_settings.topics.documents, 1, TIMEOUT_S)
            request = decode(message.value() or b"")
            assert isinstance(request, DocumentRequest) and request.doc_id is not None
            assert request.options.figures == "crop"
            result = ResultRecord(
                doc_id=request.doc_id,
                status="completed",
                num_pages=1,
                document_text=text,
                content=text,
                blocks=blocks,
                figures=[figure.model_copy(update={"ref": missing})],
            )
            produce(kafka_settings, kafka_settings.topics.results, [(request.doc_id, result)])
            stdout, _ = process.communicate(timeout=TIMEOUT_S)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        log.seek(0)
        stderr = log.read()
    assert process.returncode == 0, stderr  # a warning, not a failure
    link = f"lost_figures/{LOST}"
    assert (tmp_path / "lost.md").read_text() == f"Before.\n\n![Figure 1, page 1](<{link}>)\n"
    assert not (tmp_path / "lost_figures").exists()
    assert "warning figure_unavailable: figure 1 (page 1) is not available: no such blob" in stdout
