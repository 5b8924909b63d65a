"""`ocrflux convert FILE`: the direct driver from the command line (wiring only). Logging is
configured and unexpected failures reported by `ocrflux.cli.main`.

Figures (`--figures crop`, the default where they can go): with `-o OUT` each is written to
`<OUT's stem>_figures/` beside OUT and the output links there; JSON on stdout carries them inline
(base64 `data`); Markdown, text and chunks on stdout cannot carry them, so there the default is
`none` and asking for `crop` is a usage error.

Run as its own process (`ocrflux.cli`), the command forked its head start before loading
(`args.head_start`, `ocrflux.head_start`): once the input is read and the options are checked,
the child is handed the document and renders its pages while this process loads the HTTP client
and the driver, so the driver and the engines are imported only after that."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from ocrflux import collector
from ocrflux.exit_codes import EXIT_FAILED, EXIT_USAGE, exit_for_status
from ocrflux.failures import validation_problems
from ocrflux.figures import figure_bytes, figure_files, figures_folder
from ocrflux.filenames import display_name, text_name
from ocrflux.head_start import HeadStart
from ocrflux.pages import open_options
from ocrflux.progress import ProgressBoard
from ocrflux.render_pool import RenderPool, shared_pool
from ocrflux.result_formats import SUFFIXES, render_output
from ocrflux.settings import CoreSettings
from schemas.options import ConversionOptions
from schemas.results import DocumentResult


def _settings(args: argparse.Namespace) -> CoreSettings:
    overrides = {
        "vllm_url": args.vllm_url,
        "max_page_retries": args.max_page_retries,
        "skip_cross_page_merge": args.skip_cross_page_merge,
    }
    return CoreSettings(**{k: v for k, v in overrides.items() if v is not None})


class _UsageError(Exception):
    pass


def _figures(args: argparse.Namespace, to_file: bool) -> Literal["crop"] | None:
    """`crop` or None (none) from the flags: crop by default wherever figures can go (a file,
    or JSON on stdout, which carries them inline), none for other formats on stdout."""
    fmt = "json" if args.json else args.format
    carried = to_file or fmt == "json"
    if args.figures == "crop" and not carried:
        raise _UsageError(
            f"--figures crop: {fmt} on standard output cannot carry figures; write to a file "
            f"(-o OUT, figures go in OUT_figures/) or use --format json (figures inline)"
        )
    mode = args.figures or ("crop" if carried else "none")
    if args.figure_scale is not None and mode != "crop":
        why = "" if args.figures else f" ({fmt} on standard output has no figures by default)"
        raise _UsageError(f"--figure-scale goes with --figures crop{why}")
    return "crop" if mode == "crop" else None


def _options(args: argparse.Namespace, settings: CoreSettings) -> ConversionOptions:
    figures = _figures(args, to_file=bool(args.output))
    try:
        return ConversionOptions(
            output_format=args.format,
            max_page_retries=settings.max_page_retries,
            skip_cross_page_merge=settings.skip_cross_page_merge,
            pages=args.pages,
            engine=args.engine,
            chunk_tokens=args.chunk_tokens,
            figures=figures,
            figure_scale=args.figure_scale,
        )
    except ValidationError as exc:  # from the flags
        raise _UsageError(f"invalid options: {validation_problems(exc)}") from None


def run_convert(args: argparse.Namespace) -> int:
    head_start: HeadStart | None = args.head_start
    settings = _settings(args)
    path = Path(args.file)
    name = display_name(path.name)
    try:
        options = _options(args, settings)
    except _UsageError as exc:
        print(f"ocrflux: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        data = path.read_bytes()
    except OSError as exc:  # an input that cannot be read is a failure, like a failed document
        print(
            f"ocrflux: error: cannot read {display_name(path)}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_FAILED
    output = Path(args.output) if args.output else None
    if output is not None:
        problem = _output_problem(output, with_figures=options.crop_figures)
        if problem:  # before converting: a conversion must not be thrown away for want of a folder
            print(
                f"ocrflux: error: cannot write {display_name(output)}: {problem}", file=sys.stderr
            )
            return EXIT_FAILED
    renders = shared_pool(settings.render_processes)
    if head_start is not None:
        _hand_over(head_start, data, settings, options, args.engine, renders)
    try:
        conversion = _convert(data, path, name, settings, options, args, renders, head_start)
        result = asyncio.run(conversion)
    finally:
        if head_start is not None:
            head_start.close()
    written = True
    if output is not None and result.figures:
        result, figures = figure_files(result, _output_stem(output), _inline_pngs(result))
        written = _write_figures(figures, output.parent)
    rendered = render_output(
        result, "json" if args.json else options.output_format, chunk_tokens=options.chunk_tokens
    )
    try:
        _write(rendered.body, output)
    except OSError as exc:
        _cannot_write(output, exc)
        written = False
    _report(result, name)
    return exit_for_status(result.status, args.allow_partial) if written else EXIT_FAILED


def _hand_over(
    head_start: HeadStart,
    data: bytes,
    settings: CoreSettings,
    options: ConversionOptions,
    requested: str | None,
    renders: RenderPool,
) -> None:
    """The document to the head start, rendered for the engine the conversion will most likely
    use: the one asked for, or for `auto` vLLM when `VLLM_URL` is set (if its `/health` does not
    answer, `auto` takes the local engine, and the driver opens the document itself)."""
    how = open_options(
        requested or settings.ocrflux_engine,
        vllm_configured=bool(settings.vllm_url),
        max_bytes=settings.max_file_bytes,
        max_pages=settings.max_pages,
    )
    head_start.render(data, how, pages=options.pages, in_pool=renders.rule)


async def _convert(
    data: bytes,
    path: Path,
    name: str,
    settings: CoreSettings,
    options: ConversionOptions,
    args: argparse.Namespace,
    renders: RenderPool,
    head_start: HeadStart | None,
) -> DocumentResult:
    # Imported once the head start has its document: it renders meanwhile (about 0.1 s of imports).
    from ocrflux.convert import convert_document
    from ocrflux.engines import open_engine

    collector.resume()  # loaded: the conversion makes garbage

    board = ProgressBoard({name: name}, sys.stderr)  # `name: page N/M` for the one document
    async with open_engine(settings, args.engine) as engine:
        result = await convert_document(
            data,
            engine=engine,
            options=options,
            source=text_name(path.name),
            page_concurrency=settings.page_concurrency,
            renders=renders,
            max_bytes=settings.max_file_bytes,
            max_pages=settings.max_pages,
            progress=board.pages(name),
            head_start=head_start,
        )
    board.close()
    return result


def _output_stem(output: Path) -> str:
    """OUT's name without its format suffix (the longest of `SUFFIXES` it ends with, so
    `out.chunks.json` is `out`), else without its last suffix: its figures go in
    `<stem>_figures/` beside it."""
    name = output.name
    for suffix in sorted(SUFFIXES.values(), key=len, reverse=True):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name.removesuffix(suffix)
    return Path(name).stem


def _inline_pngs(result: DocumentResult) -> dict[int, bytes]:
    """The PNGs the direct driver carries inline (a figure it could not crop already has its
    `figure_unavailable` warning)."""
    pngs = {figure.number: figure_bytes(figure) for figure in result.figures}
    return {number: png for number, png in pngs.items() if png is not None}


def _write_figures(figures: dict[str, bytes], folder: Path) -> bool:
    """Write each figure (paths relative to `folder`); False when one could not be written,
    each failure reported like the output's."""
    ok = True
    for relative, png in figures.items():
        target = folder / relative
        try:
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(png)
        except OSError as exc:
            _cannot_write(target, exc)
            ok = False
    return ok


def _cannot_write(output: Path | None, exc: OSError) -> None:
    where = display_name(output) if output is not None else "standard output"
    print(f"ocrflux: error: cannot write {where}: {exc.strerror or exc}", file=sys.stderr)


def _output_problem(output: Path, *, with_figures: bool) -> str | None:
    """Create the output's folder (like `mkdir -p`); why the output (or, `with_figures`, its
    figures folder) cannot be written, if so."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create {display_name(output.parent)}: {exc.strerror or exc}"
    if output.is_dir():
        return "it is a folder"
    if not os.access(output if output.exists() else output.parent, os.W_OK):
        return "permission denied"
    figures = output.parent / figures_folder(_output_stem(output))
    if with_figures and figures.exists() and not figures.is_dir():
        return f"its figures folder {display_name(figures)} is a file"
    return None


def _write(text: str, output: Path | None) -> None:
    if output is not None:
        output.write_text(text, encoding="utf-8")
        return
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError:
        # Nothing more can reach stdout (a closed pipe): keep the interpreter's final flush quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise


def _report(result: DocumentResult, name: str) -> None:
    """The result's status, error and warnings on stderr (stdout carries only the output)."""
    error = result.error
    if result.status != "completed":
        detail = f"{error.code}: {error.message}" if error else "no detail"
        print(f"ocrflux: {name} {result.status}: {detail}", file=sys.stderr)
    if result.fallback_pages and result.status != "failed":
        print(
            f"ocrflux: {name}: pages {result.fallback_pages} (0-based) were not "
            f"recognized by the model; filled from the text layer where possible",
            file=sys.stderr,
        )
    for warning in getattr(result, "warnings", None) or []:
        print(f"ocrflux: {name}: warning: {warning.code}: {warning.message}", file=sys.stderr)
