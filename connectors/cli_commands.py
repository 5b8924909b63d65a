"""`ocrflux submit`, `ocrflux results` and `ocrflux cancel`: the client SDK from the command
line (wiring only).

Both take the bootstrap address from `KAFKA_BOOTSTRAP_SERVERS`, else the local broker's state
file; with neither, `KafkaSettings()` raises the `KafkaNotConfigured` that says how to start or
name a broker. That, invalid settings and an unreachable Kafka (`KafkaClientError`) are reported
by `ocrflux.cli.main` (`ocrflux.failures`: exit 2, 2 and 1).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from connectors._tail import Mark
from connectors.client import OcrfluxClient
from connectors.output_names import output_paths, output_stem
from ocrflux.exit_codes import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from ocrflux.failures import validation_problems
from ocrflux.figures import figure_files
from ocrflux.filenames import display_name
from ocrflux.progress import ProgressBoard
from ocrflux.result_formats import SUFFIXES, render_output
from schemas.options import ConversionOptions
from schemas.records import ProgressEvent, ResultRecord
from streams.blobstore import BlobStoreError
from streams.kafka import LIBRDKAFKA_LOGGER, KafkaSettings


class _UsageError(Exception):
    pass


def _client() -> OcrfluxClient:
    """A client configured from the environment (see `streams.kafka`)."""
    # librdkafka logs every refused connection; the command reports the failure once itself.
    LIBRDKAFKA_LOGGER.setLevel(logging.CRITICAL)
    return OcrfluxClient(KafkaSettings())


def _error(message: str, code: int) -> int:
    print(f"ocrflux: error: {message}", file=sys.stderr)
    return code


def _options(args: argparse.Namespace) -> ConversionOptions:
    given = {
        "output_format": args.format,
        "max_page_retries": args.max_page_retries,
        "skip_cross_page_merge": args.skip_cross_page_merge or None,
        "pages": args.pages,
        "engine": args.engine,
        "chunk_tokens": args.chunk_tokens,
        # `none` stays unset, as before figures existed: the same doc_id as then.
        "figures": "crop" if args.figures == "crop" else None,
        "figure_scale": args.figure_scale,
    }
    try:
        return ConversionOptions(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise _UsageError(f"invalid options: {validation_problems(exc)}") from None


# --- submit ----------------------------------------------------------------------------------


@dataclass
class _Submitted:
    """Files by doc_id (the same bytes and options twice share one doc_id and one result)."""

    paths: dict[str, list[Path]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)

    def labels(self) -> dict[str, str]:
        return {
            doc_id: ", ".join(display_name(p.name) for p in dict.fromkeys(paths))
            for doc_id, paths in self.paths.items()
        }


@dataclass
class _Done:
    """A document's result and what became of its outputs."""

    result: ResultRecord
    written: list[tuple[Path, Path]] = field(default_factory=list)  # (input, output)
    unwritten: list[str] = field(default_factory=list)  # one message per output not written
    figures: int = 0  # figure files written beside the outputs


def run_submit(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.wait and args.out else None
    if out is not None:
        try:  # before sending anything: no result may arrive with nowhere to go
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return _error(f"cannot create {display_name(out)}: {exc.strerror or exc}", EXIT_FAILED)
    try:
        options = _options(args)
        targets = output_paths([Path(f) for f in args.files], out, SUFFIXES[options.output_format])
        with _client() as client:
            # The wait reads only what is written after this mark: an old result is not this
            # submission's answer, and the topics' history is not read at all.
            mark = client.mark() if args.wait else {}
            submitted = _submit_files(client, args.files, options, args)
            if not args.wait:
                return EXIT_FAILED if submitted.unreadable else EXIT_OK
            if not submitted.paths:
                if args.json:
                    _print_unanswered(submitted, {}, sys.stdout)
                return EXIT_FAILED
            results = _wait(
                client, submitted, targets, args.timeout, mark, options, as_json=args.json
            )
    except _UsageError as exc:
        return _error(str(exc), EXIT_USAGE)
    except BlobStoreError as exc:  # the claim-check store did not take a large document
        return _error(str(exc), EXIT_FAILED)
    if args.json:
        _print_unanswered(submitted, results, sys.stdout)
    else:
        _summarize(submitted, results, args, sys.stdout)
    return _exit_code(submitted, results, args.allow_partial)


def _submit_files(
    client: OcrfluxClient, files: list[str], options: ConversionOptions, args: argparse.Namespace
) -> _Submitted:
    """Send each file, printing `doc_id  file` (with --json an object) for each one sent; with
    --wait --json only the results are printed."""
    submitted = _Submitted()
    for name in files:
        path = Path(name)
        try:
            doc_id = client.submit(path, options)
        except OSError as exc:
            print(
                f"ocrflux: cannot read {display_name(path)}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            submitted.unreadable.append(display_name(path))
            continue
        submitted.paths.setdefault(doc_id, []).append(path)
        if not args.json:
            print(f"{doc_id}  {display_name(path)}", flush=True)
        elif not args.wait:
            _print_json({"doc_id": doc_id, "file": display_name(path)}, sys.stdout)
    return submitted


def _wait(
    client: OcrfluxClient,
    submitted: _Submitted,
    targets: Mapping[Path, Path],
    timeout_s: float | None,
    mark: Mark,
    options: ConversionOptions,
    *,
    as_json: bool,
) -> dict[str, _Done]:
    """Progress bars until every document has a result (or `timeout_s`); writes the outputs."""
    board = ProgressBoard(submitted.labels(), sys.stderr)
    board.draw()
    done: dict[str, _Done] = {}
    try:
        for record in client.watch(submitted.paths, timeout_s=timeout_s, after=mark):
            if isinstance(record, ProgressEvent):
                board.update(record)
                continue
            board.finish(record)
            outcome = _write_outputs(
                client, record, submitted.paths[record.doc_id], targets, options
            )
            done[record.doc_id] = outcome
            if as_json:
                _print_json(_done_json(outcome, submitted.paths[record.doc_id]), sys.stdout)
    finally:
        board.close()
    return done


def _write_outputs(
    client: OcrfluxClient,
    result: ResultRecord,
    inputs: list[Path],
    targets: Mapping[Path, Path],
    options: ConversionOptions,
) -> _Done:
    """Each input's output, and its figures in `STEM_figures/` beside it, linked from it."""
    done = _Done(result)
    if result.status in ("failed", "cancelled"):
        return done
    pngs: dict[int, bytes] = {}
    if result.figures:  # fetched once, written beside every output of the document
        pngs, warnings = client.figure_pngs(result)
        if warnings:
            done.result = result = result.model_copy(
                update={"warnings": [*result.warnings, *warnings]}
            )
    suffix = SUFFIXES[options.output_format]
    for source in dict.fromkeys(inputs):  # a file named twice is written once
        target = targets[source]
        linked, figures = figure_files(result, output_stem(target, suffix), pngs)
        text = render_output(linked, options.output_format, chunk_tokens=options.chunk_tokens)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            done.unwritten.append(_cannot_write(target.parent, exc))
            continue
        for relative, png in figures.items():
            path = target.parent / relative
            try:
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(png)
            except OSError as exc:
                done.unwritten.append(_cannot_write(path, exc))
                continue
            done.figures += 1
        try:
            target.write_text(text.body, encoding="utf-8")
        except OSError as exc:
            done.unwritten.append(_cannot_write(target, exc))
            continue
        done.written.append((source, target))
    return done


def _cannot_write(path: Path, exc: OSError) -> str:
    return f"cannot write {display_name(path)}: {exc.strerror or exc}"


def _summarize(
    submitted: _Submitted, results: dict[str, _Done], args: argparse.Namespace, out: TextIO
) -> None:
    counts = {"completed": 0, "partial": 0, "failed": 0, "cancelled": 0, "missing": 0}
    lines = []
    unwritten = 0
    for doc_id, paths in submitted.paths.items():
        names = ", ".join(display_name(p) for p in dict.fromkeys(paths))
        if doc_id not in results:
            counts["missing"] += 1
            within = f" within {args.timeout:g}s" if args.timeout is not None else ""
            lines.append(f"  missing    {names}  no result{within}")
            continue
        done = results[doc_id]
        result = done.result
        counts[result.status] += 1
        detail = ""
        if result.error is not None:
            detail = f"  {result.error.code}: {result.error.message}"
        if result.fallback_pages:
            detail += f"  fallback pages {result.fallback_pages} (0-based)"
        if done.written:
            names = ", ".join(
                f"{display_name(source)} -> {display_name(target)}"
                for source, target in done.written
            )
        if done.figures:
            names += f" (+{done.figures} figure{'s' if done.figures != 1 else ''})"
        lines.append(f"  {result.status:<9}  {names}{detail}")
        lines.extend(f"             {problem}" for problem in done.unwritten)
        unwritten += len(done.unwritten)
        for warning in getattr(result, "warnings", None) or []:
            lines.append(f"             warning {warning.code}: {warning.message}")
    for name in submitted.unreadable:
        lines.append(f"  unreadable {name}")
    total = len(submitted.paths) + len(submitted.unreadable)
    head = (
        f"{total} document{'s' if total != 1 else ''}: {counts['completed']} completed, "
        f"{counts['partial']} partial, {counts['failed']} failed"
    )
    if counts["cancelled"]:
        head += f", {counts['cancelled']} cancelled"
    if counts["missing"]:
        head += f", {counts['missing']} without a result"
    if submitted.unreadable:
        head += f", {len(submitted.unreadable)} unreadable"
    if unwritten:
        head += f", {unwritten} output{'s' if unwritten != 1 else ''} not written"
    print(head, file=out)
    for line in lines:
        print(line, file=out)
    out.flush()


def _exit_code(submitted: _Submitted, results: dict[str, _Done], allow_partial: bool) -> int:
    statuses = {done.result.status for done in results.values()}
    unanswered = len(results) < len(submitted.paths)
    unwritten = any(done.unwritten for done in results.values())
    if statuses & {"failed", "cancelled"} or unanswered or submitted.unreadable or unwritten:
        return EXIT_FAILED
    return EXIT_PARTIAL if "partial" in statuses and not allow_partial else EXIT_OK


# --- --json ----------------------------------------------------------------------------------


def _print_json(value: dict[str, object], out: TextIO) -> None:
    print(json.dumps(value, ensure_ascii=False), file=out, flush=True)


def _done_json(done: _Done, inputs: list[Path]) -> dict[str, object]:
    """One document's result as `submit --wait --json` prints it (the content is in the files)."""
    result = done.result
    return {
        "doc_id": result.doc_id,
        "status": result.status,
        "files": [display_name(p) for p in dict.fromkeys(inputs)],
        "outputs": [display_name(target) for _, target in done.written],
        "num_pages": result.num_pages,
        "fallback_pages": result.fallback_pages,
        "error": result.error.model_dump() if result.error else None,
        "warnings": [w.model_dump() for w in getattr(result, "warnings", None) or []],
        "problems": done.unwritten,
    }


def _print_unanswered(submitted: _Submitted, results: dict[str, _Done], out: TextIO) -> None:
    """With --wait --json: a line for each document without a result, and each unreadable file."""
    for doc_id, paths in submitted.paths.items():
        if doc_id not in results:
            files = [display_name(p) for p in dict.fromkeys(paths)]
            _print_json({"doc_id": doc_id, "status": "missing", "files": files}, out)
    for name in submitted.unreadable:
        _print_json({"doc_id": None, "status": "unreadable", "files": [name]}, out)


# --- cancel ----------------------------------------------------------------------------------


def run_cancel(args: argparse.Namespace) -> int:
    with _client() as client:
        for doc_id in dict.fromkeys(args.doc_ids):
            client.cancel(doc_id, reason=args.reason)
            print(doc_id, flush=True)
    return EXIT_OK


# --- results ---------------------------------------------------------------------------------


def run_results(args: argparse.Namespace) -> int:
    wanted = list(dict.fromkeys(args.doc_ids)) or None
    seen: set[str] = set()
    try:
        with _client() as client:
            for result in client.results(
                wanted, follow=args.follow, wait=args.wait, timeout_s=args.timeout
            ):
                seen.add(result.doc_id)
                print(result.model_dump_json() if args.json else result_line(result), flush=True)
    except BlobStoreError as exc:
        return _error(str(exc), EXIT_FAILED)
    missing = [doc_id for doc_id in wanted or () if doc_id not in seen]
    for doc_id in missing:
        print(f"ocrflux: no result for {doc_id}", file=sys.stderr)
    return EXIT_FAILED if missing else EXIT_OK


def result_line(result: ResultRecord) -> str:
    """`doc_id  status  pages=N  fallback=[...]  source  [code: message]` on one line."""
    fallback = ",".join(map(str, result.fallback_pages)) or "-"
    parts = [
        result.doc_id,
        f"{result.status:<9}",
        f"pages={result.num_pages}",
        f"fallback={fallback}",
        display_name(result.source) if result.source else "-",
    ]
    if result.error is not None:
        parts.append(f"{result.error.code}: {result.error.message}")
    return "  ".join(parts)
