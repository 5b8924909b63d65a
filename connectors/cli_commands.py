"""`ocrflux submit` and `ocrflux results`: the client SDK from the command line (wiring only).

Both take the bootstrap address from `KAFKA_BOOTSTRAP_SERVERS`, else the local broker's state
file; with neither, `KafkaSettings()` raises the `BrokerError` that says how to start or name a
broker, and `ocrflux.cli.main` prints it and exits with 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from connectors.blobstore import BlobStoreError
from connectors.client import OcrfluxClient
from connectors.kafka_config import LIBRDKAFKA_LOGGER, KafkaClientError, KafkaSettings
from connectors.progress_bar import ProgressBoard
from schemas.options import ConversionOptions
from schemas.records import ProgressEvent, ResultRecord

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
_SUFFIXES = {"markdown": ".md", "text": ".txt"}


class _UsageError(Exception):
    pass


def _client() -> OcrfluxClient:
    """A client configured from the environment (see `connectors.kafka_config`)."""
    # librdkafka logs every refused connection; the command reports the failure once itself.
    LIBRDKAFKA_LOGGER.setLevel(logging.CRITICAL)
    try:
        settings = KafkaSettings()
    except ValidationError as exc:
        raise _UsageError(f"invalid Kafka settings: {_problems(exc)}") from None
    return OcrfluxClient(settings)


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())


def _error(message: str) -> int:
    print(f"ocrflux: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def _options(args: argparse.Namespace) -> ConversionOptions:
    given = {
        "output_format": args.format,
        "max_page_retries": args.max_page_retries,
        "skip_cross_page_merge": args.skip_cross_page_merge or None,
        "page_range": args.pages,
        "engine": args.engine,
    }
    try:
        return ConversionOptions(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as exc:
        raise _UsageError(f"invalid options: {_problems(exc)}") from None


# --- submit ----------------------------------------------------------------------------------


@dataclass
class _Submitted:
    """Files by doc_id (the same bytes and options twice share one doc_id and one result)."""

    paths: dict[str, list[Path]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)

    def labels(self) -> dict[str, str]:
        return {doc_id: ", ".join(p.name for p in paths) for doc_id, paths in self.paths.items()}


def run_submit(args: argparse.Namespace) -> int:
    try:
        options = _options(args)
        with _client() as client:
            submitted = _submit_files(client, args.files, options)
            if not args.wait:
                return EXIT_FAILED if submitted.unreadable else EXIT_OK
            if not submitted.paths:
                return EXIT_FAILED
            results = _wait(client, submitted, args)
    except (_UsageError, KafkaClientError, BlobStoreError) as exc:
        return _error(str(exc))
    return _summarize(submitted, results, args, sys.stdout)


def _submit_files(
    client: OcrfluxClient, files: list[str], options: ConversionOptions
) -> _Submitted:
    submitted = _Submitted()
    for name in files:
        path = Path(name)
        try:
            doc_id = client.submit(path, options)
        except OSError as exc:
            print(f"ocrflux: cannot read {path}: {exc.strerror or exc}", file=sys.stderr)
            submitted.unreadable.append(name)
            continue
        submitted.paths.setdefault(doc_id, []).append(path)
        print(f"{doc_id}  {path}", flush=True)
    return submitted


def _wait(
    client: OcrfluxClient, submitted: _Submitted, args: argparse.Namespace
) -> dict[str, tuple[ResultRecord, list[Path]]]:
    """Progress bars until every document has a result (or `--timeout`); writes the outputs."""
    board = ProgressBoard(submitted.labels(), sys.stderr)
    board.draw()
    done: dict[str, tuple[ResultRecord, list[Path]]] = {}
    try:
        for record in client.watch(submitted.paths, timeout_s=args.timeout):
            if isinstance(record, ProgressEvent):
                board.update(record)
                continue
            board.finish(record)
            written = _write_outputs(record, submitted.paths[record.doc_id], args.out)
            done[record.doc_id] = (record, written)
    finally:
        board.close()
    return done


def _write_outputs(result: ResultRecord, inputs: list[Path], out: str | None) -> list[Path]:
    if result.status == "failed":
        return []
    text = result.content if result.content.endswith("\n") else result.content + "\n"
    written = []
    for source in inputs:
        folder = Path(out) if out else source.parent
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / (source.stem + _SUFFIXES.get(result.output_format, ".md"))
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written


def _summarize(
    submitted: _Submitted,
    results: dict[str, tuple[ResultRecord, list[Path]]],
    args: argparse.Namespace,
    out: TextIO,
) -> int:
    counts = {"completed": 0, "partial": 0, "failed": 0, "missing": 0}
    lines = []
    for doc_id, paths in submitted.paths.items():
        names = ", ".join(str(p) for p in paths)
        if doc_id not in results:
            counts["missing"] += 1
            within = f" within {args.timeout:g}s" if args.timeout is not None else ""
            lines.append(f"  missing    {names}  no result{within}")
            continue
        result, written = results[doc_id]
        counts[result.status] += 1
        detail = ""
        if result.error is not None:
            detail = f"  {result.error.code}: {result.error.message}"
        elif result.fallback_pages:
            detail = f"  fallback pages {result.fallback_pages} (0-based)"
        targets = ", ".join(str(p) for p in written)
        arrow = f" -> {targets}" if targets else ""
        lines.append(f"  {result.status:<9}  {names}{arrow}{detail}")
    for name in submitted.unreadable:
        lines.append(f"  unreadable {name}")
    total = len(submitted.paths) + len(submitted.unreadable)
    head = (
        f"{total} document{'s' if total != 1 else ''}: {counts['completed']} completed, "
        f"{counts['partial']} partial, {counts['failed']} failed"
    )
    if counts["missing"]:
        head += f", {counts['missing']} without a result"
    if submitted.unreadable:
        head += f", {len(submitted.unreadable)} unreadable"
    print(head, file=out)
    for line in lines:
        print(line, file=out)
    out.flush()
    bad = counts["failed"] or counts["missing"] or submitted.unreadable
    return EXIT_FAILED if bad else EXIT_OK


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
    except (_UsageError, KafkaClientError, BlobStoreError) as exc:
        return _error(str(exc))
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
        result.source or "-",
    ]
    if result.error is not None:
        parts.append(f"{result.error.code}: {result.error.message}")
    return "  ".join(parts)
