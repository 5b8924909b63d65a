"""Output file names of `ocrflux submit --wait`: one distinct file per input, never an input."""

from __future__ import annotations

from pathlib import Path

from connectors.output_names import output_paths


def test_distinct_stems_give_stem_names_next_to_each_input() -> None:
    inputs = [Path("a.pdf"), Path("scans/b.png"), Path("other/a.pdf")]
    assert output_paths(inputs, None, ".md") == {
        Path("a.pdf"): Path("a.md"),
        Path("scans/b.png"): Path("scans/b.md"),
        Path("other/a.pdf"): Path("other/a.md"),
    }


def test_shared_stems_keep_the_whole_name_then_a_number() -> None:
    out = Path("out")
    inputs = [Path("image.webp"), Path("image.bmp"), Path("x/doc.pdf"), Path("y/doc.pdf")]
    assert output_paths(inputs, out, ".txt") == {
        Path("image.webp"): out / "image.webp.txt",
        Path("image.bmp"): out / "image.bmp.txt",
        Path("x/doc.pdf"): out / "doc.pdf.txt",
        Path("y/doc.pdf"): out / "doc.pdf-2.txt",
    }


def test_an_input_named_twice_has_one_output_and_no_input_is_overwritten() -> None:
    inputs = [Path("notes.md"), Path("sub/../notes.md"), Path("a.pdf")]
    assert output_paths(inputs, None, ".md") == {
        Path("notes.md"): Path("notes.md.md"),
        Path("sub/../notes.md"): Path("notes.md.md"),
        Path("a.pdf"): Path("a.md"),
    }


def test_same_command_line_same_names(tmp_path: Path) -> None:
    inputs = [tmp_path / name for name in ("r.pdf", "r.png", "r.pdf.png", "s.tiff")]
    first = output_paths(inputs, tmp_path / "out", ".md")
    assert output_paths(inputs, tmp_path / "out", ".md") == first
    assert len(set(first.values())) == len(inputs)
