"""`ocrflux convert FILE`: the direct driver from the command line (wiring only)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ocrflux.convert import convert_document
from ocrflux.engines import open_engine
from ocrflux.settings import CoreSettings
from schemas.options import ConversionOptions


def _settings(args: argparse.Namespace) -> CoreSettings:
    overrides = {
        "vllm_url": args.vllm_url,
        "max_page_retries": args.max_page_retries,
        "skip_cross_page_merge": args.skip_cross_page_merge,
    }
    return CoreSettings(**{k: v for k, v in overrides.items() if v is not None})


class _Progress:
    """`page N/M` on stderr, rewritten in place when stderr is a terminal."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tty = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        if self._tty:
            end = "\n" if done == total else ""
            print(f"\r{self._name}: page {done}/{total}", end=end, file=sys.stderr, flush=True)
        elif done == total or done % 10 == 0:
            print(f"{self._name}: page {done}/{total}", file=sys.stderr, flush=True)


async def run_convert(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    settings = _settings(args)
    path = Path(args.file)
    try:
        data = path.read_bytes()
    except OSError as exc:
        print(f"ocrflux: error: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return 2
    options = ConversionOptions(
        output_format=args.format,
        max_page_retries=settings.max_page_retries,
        skip_cross_page_merge=settings.skip_cross_page_merge,
        page_range=args.pages,
        engine=args.engine,
    )
    async with open_engine(settings, args.engine) as engine:
        result = await convert_document(
            data,
            engine=engine,
            options=options,
            source=path.name,
            page_concurrency=settings.page_concurrency,
            max_bytes=settings.max_file_bytes,
            max_pages=settings.max_pages,
            progress=_Progress(path.name),
        )
    text = result.model_dump_json(indent=2) if args.json else result.content
    if args.output:
        Path(args.output).write_text(text + ("" if text.endswith("\n") else "\n"))
    else:
        sys.stdout.write(text + ("" if text.endswith("\n") else "\n"))
    if result.status == "failed":
        error = result.error
        print(
            f"ocrflux: {path.name} failed: {error.code if error else '?'}: "
            f"{error.message if error else ''}",
            file=sys.stderr,
        )
        return 1
    if result.fallback_pages:
        print(
            f"ocrflux: {path.name}: pages {result.fallback_pages} (0-based) were not "
            f"recognized by the model; filled from the text layer where possible",
            file=sys.stderr,
        )
    return 0
