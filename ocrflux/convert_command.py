"""`ocrflux convert FILE`: the direct driver from the command line (wiring only). Logging is
configured and unexpected failures reported by `ocrflux.cli.main`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pydantic import ValidationError

from ocrflux.convert import convert_document
from ocrflux.engines import open_engine
from ocrflux.exit_codes import EXIT_FAILED, EXIT_USAGE, exit_for_status
from ocrflux.failures import validation_problems
from ocrflux.filenames import display_name, text_name
from ocrflux.progress import ProgressBoard
from ocrflux.render_pool import shared_pool
from ocrflux.result_formats import render_output
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


async def run_convert(args: argparse.Namespace) -> int:
    settings = _settings(args)
    path = Path(args.file)
    name = display_name(path.name)
    try:
        options = ConversionOptions(
            output_format=args.format,
            max_page_retries=settings.max_page_retries,
            skip_cross_page_merge=settings.skip_cross_page_merge,
            pages=args.pages,
            engine=args.engine,
            chunk_tokens=args.chunk_tokens,
        )
    except ValidationError as exc:  # from the flags
        print(f"ocrflux: error: invalid options: {validation_problems(exc)}", file=sys.stderr)
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
        problem = _output_problem(output)
        if problem:  # before converting: a conversion must not be thrown away for want of a folder
            print(
                f"ocrflux: error: cannot write {display_name(output)}: {problem}", file=sys.stderr
            )
            return EXIT_FAILED
    board = ProgressBoard({name: name}, sys.stderr)  # `name: page N/M` for the one document
    async with open_engine(settings, args.engine) as engine:
        result = await convert_document(
            data,
            engine=engine,
            options=options,
            source=text_name(path.name),
            page_concurrency=settings.page_concurrency,
            renders=shared_pool(settings.render_processes),
            max_bytes=settings.max_file_bytes,
            max_pages=settings.max_pages,
            progress=board.pages(name),
        )
    board.close()
    rendered = render_output(
        result, "json" if args.json else options.output_format, chunk_tokens=options.chunk_tokens
    )
    try:
        _write(rendered.body, output)
    except OSError as exc:
        where = display_name(output) if output is not None else "standard output"
        print(f"ocrflux: error: cannot write {where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    _report(result, name)
    return exit_for_status(result.status, args.allow_partial)


def _output_problem(output: Path) -> str | None:
    """Create the output's folder (like `mkdir -p`); why the output cannot be written, if so."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create {display_name(output.parent)}: {exc.strerror or exc}"
    if output.is_dir():
        return "it is a folder"
    if not os.access(output if output.exists() else output.parent, os.W_OK):
        return "permission denied"
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
