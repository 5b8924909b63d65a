"""`ocrflux convert` with figures (issue 14), as users run it: a subprocess against the
OCRFlux-3B test double, checked by the pixels of the figure `figure_document` draws."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from ocrflux.exit_codes import EXIT_FAILED, EXIT_USAGE
from tests.formats import check_result_json
from tests.ocrflux.test_convert_command import _convert
from tests.scenarios import (
    FIGURE_NAME,
    FIGURE_TEXT,
    FIGURE_TEXT_WITHOUT,
    assert_is_the_drawn_figure,
    figure_document,
    register,
)


def _source(server: Any, tmp_path: Path) -> Path:
    case = figure_document()
    register(server, case)
    source = tmp_path / case.name
    source.write_bytes(case.data)
    return source


def _env(server: Any) -> dict[str, str]:
    return {"VLLM_URL": server.url, "OCRFLUX_ENGINE": "vllm"}


def test_output_file_gets_its_figures_folder_by_default(
    ocrflux_server: Any, tmp_path: Path
) -> None:
    source = _source(ocrflux_server, tmp_path)
    out = tmp_path / "out.md"
    done = _convert(str(source), "-o", str(out), env=_env(ocrflux_server))
    assert done.returncode == 0, done.stderr
    assert out.read_text() == FIGURE_TEXT.format(link=f"out_figures/{FIGURE_NAME}") + "\n"
    assert [p.name for p in (tmp_path / "out_figures").iterdir()] == [FIGURE_NAME]
    assert_is_the_drawn_figure((tmp_path / "out_figures" / FIGURE_NAME).read_bytes())


def test_figures_none_leaves_them_out(ocrflux_server: Any, tmp_path: Path) -> None:
    source = _source(ocrflux_server, tmp_path)
    out = tmp_path / "out.md"
    done = _convert(str(source), "-o", str(out), "--figures", "none", env=_env(ocrflux_server))
    assert done.returncode == 0, done.stderr
    assert out.read_text() == FIGURE_TEXT_WITHOUT + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures.pdf", "out.md"]


def test_json_file_and_chunks_file_link_their_folder(ocrflux_server: Any, tmp_path: Path) -> None:
    source = _source(ocrflux_server, tmp_path)
    as_json = tmp_path / "result.json"
    done = _convert(
        str(source),
        "-o",
        str(as_json),
        "--format",
        "json",
        "--figure-scale",
        "3",
        env=_env(ocrflux_server),
    )
    assert done.returncode == 0, done.stderr
    data = check_result_json(as_json.read_text())
    link = f"result_figures/{FIGURE_NAME}"
    assert data["document_text"] == FIGURE_TEXT.format(link=link)
    [figure] = data["figures"]
    assert figure["ref"] == link and figure.get("data") is None
    assert_is_the_drawn_figure((tmp_path / link).read_bytes(), scale=3)

    chunks = tmp_path / "doc.chunks.json"  # the stem is "doc", not "doc.chunks"
    done = _convert(str(source), "-o", str(chunks), "--format", "chunks", env=_env(ocrflux_server))
    assert done.returncode == 0, done.stderr
    texts = [chunk["text"] for chunk in json.loads(chunks.read_text())["chunks"]]
    assert any(f"(<doc_figures/{FIGURE_NAME}>)" in text for text in texts)
    assert_is_the_drawn_figure((tmp_path / "doc_figures" / FIGURE_NAME).read_bytes())


def test_json_on_stdout_carries_the_figures_inline(ocrflux_server: Any, tmp_path: Path) -> None:
    source = _source(ocrflux_server, tmp_path)
    for flags in (["--format", "json"], ["--json"]):
        done = _convert(str(source), *flags, env=_env(ocrflux_server))
        assert done.returncode == 0, done.stderr
        data = check_result_json(done.stdout)
        assert data["document_text"] == FIGURE_TEXT.format(link=FIGURE_NAME)
        [figure] = data["figures"]
        assert figure["name"] == FIGURE_NAME and figure.get("ref") is None
        assert_is_the_drawn_figure(base64.b64decode(figure["data"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["figures.pdf"]


def test_markdown_on_stdout_has_no_figures_and_cannot_ask_for_them(
    ocrflux_server: Any, tmp_path: Path
) -> None:
    source = _source(ocrflux_server, tmp_path)
    plain = _convert(str(source), env=_env(ocrflux_server))
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout == FIGURE_TEXT_WITHOUT + "\n"
    ocrflux_server.reset("stats")
    for fmt in ("markdown", "text", "chunks"):
        done = _convert(str(source), "--format", fmt, "--figures", "crop", env=_env(ocrflux_server))
        assert done.returncode == EXIT_USAGE, done.stderr
        assert done.stderr.startswith(
            f"ocrflux: error: --figures crop: {fmt} on standard output cannot carry figures"
        )
        assert done.stdout == ""
    scale = _convert(str(source), "--figure-scale", "3", env=_env(ocrflux_server))
    assert scale.returncode == EXIT_USAGE
    assert "--figure-scale goes with --figures crop" in scale.stderr
    assert ocrflux_server.stats()["by_task"] == {}  # refused before any model work


def test_a_figures_folder_that_is_a_file_stops_before_converting(
    ocrflux_server: Any, tmp_path: Path
) -> None:
    source = _source(ocrflux_server, tmp_path)
    (tmp_path / "out_figures").write_text("in the way")
    ocrflux_server.reset("stats")
    done = _convert(str(source), "-o", str(tmp_path / "out.md"), env=_env(ocrflux_server))
    assert done.returncode == EXIT_FAILED
    assert "out_figures is a file" in done.stderr
    assert not (tmp_path / "out.md").exists()
    assert ocrflux_server.stats()["by_task"] == {}
