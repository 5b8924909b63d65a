"""Where `ocrflux submit --wait` writes each input's result: a distinct file per input, decided
from the command line alone (so the same command always writes the same files).

The rule, also in `ocrflux submit --help`: `STEM.md` (or `.txt`, `.json`, `.chunks.json`: the
format's suffix, `ocrflux.result_formats.SUFFIXES`) next to the input or in `--out`.
When several inputs would get the same file (`image.webp`, `image.bmp`), each of them keeps its
whole name instead (`image.webp.md`, `image.bmp.md`); if that still clashes (the same name from
two folders), `-2`, `-3`, ... follow in command-line order (`image.pdf.md`, `image.pdf-2.md`). An
output never takes the path of an input. An input named twice is one input with one output.
Names keep the input's original bytes (`Path` carries them), however they decode.
A result's figures go in `STEM_figures/` beside its output, STEM being the output's name without
the format's suffix (`output_stem`): `image.webp.md` keeps them in `image.webp_figures/`.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["output_paths", "output_stem"]


def output_paths(inputs: Sequence[Path], out: Path | None, suffix: str) -> dict[Path, Path]:
    """The output file of each input (keyed as given), with `suffix` such as ".md"."""
    firsts: dict[Path, Path] = {}  # absolute input -> the input as first given
    for source in inputs:
        firsts.setdefault(_absolute(source), source)

    def folder(source: Path) -> Path:
        return out if out is not None else source.parent

    def by_stem(source: Path) -> Path:
        return _absolute(folder(source) / (source.stem + suffix))

    stems = Counter(by_stem(source) for source in firsts.values())
    taken = set(firsts)  # never an input's own path
    chosen: dict[Path, Path] = {}
    for key, source in firsts.items():
        for name in _candidates(source, suffix, shared_stem=stems[by_stem(source)] > 1):
            target = folder(source) / name
            if _absolute(target) not in taken:
                break
        taken.add(_absolute(target))
        chosen[key] = target
    return {source: chosen[_absolute(source)] for source in inputs}


def output_stem(output: Path, suffix: str) -> str:
    """The output's name without `suffix` (the one `output_paths` gave it)."""
    return output.name.removesuffix(suffix)


def _candidates(source: Path, suffix: str, *, shared_stem: bool) -> Iterator[str]:
    if not shared_stem:
        yield source.stem + suffix
    yield source.name + suffix
    number = 2
    while True:
        yield f"{source.name}-{number}{suffix}"
        number += 1


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))
