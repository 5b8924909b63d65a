"""Write the JSON Schema of every exported topic record, and of the output formats that are not
records (`document_chunks`), to `schemas/json/<name>.schema.json`. The `json` output format is
the document result itself: `document_result.schema.json`.

    python -m schemas.export           write (and remove files of records no longer exported)
    python -m schemas.export --check   exit 1 when the files on disk differ from the models

The output is stable: sorted keys, two-space indent, a trailing newline.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel

from schemas.chunks import DocumentChunks
from schemas.records import EXPORTED as RECORDS

#: Every model with a schema file: the topic records and the chunks output format.
EXPORTED: dict[str, type[BaseModel]] = {**RECORDS, "document_chunks": DocumentChunks}

JSON_DIR = Path(__file__).resolve().parent / "json"
SUFFIX = ".schema.json"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def render(model: type[BaseModel]) -> str:
    schema = {"$schema": DIALECT, **model.model_json_schema()}
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def expected_files(exported: dict[str, type[BaseModel]] = EXPORTED) -> dict[str, str]:
    """File name -> content for every exported model."""
    return {f"{name}{SUFFIX}": render(model) for name, model in sorted(exported.items())}


def stale_files(directory: Path = JSON_DIR) -> list[str]:
    """Names of files that are missing, differ from the models, or belong to no model."""
    expected = expected_files()
    on_disk = {path.name for path in directory.glob(f"*{SUFFIX}")}
    stale = [
        name
        for name, text in expected.items()
        if name not in on_disk or (directory / name).read_text(encoding="utf-8") != text
    ]
    return sorted(stale + sorted(on_disk - expected.keys()))


def write(directory: Path = JSON_DIR) -> list[str]:
    """Write every schema file (and delete unexported ones); returns the names that changed."""
    changed = stale_files(directory) if directory.exists() else sorted(expected_files())
    directory.mkdir(parents=True, exist_ok=True)
    expected = expected_files()
    for path in directory.glob(f"*{SUFFIX}"):
        if path.name not in expected:
            path.unlink()
    for name, text in expected.items():
        target = directory / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.export", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale files")
    parser.add_argument("--dir", type=Path, default=JSON_DIR, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.dir)
        for name in stale:
            print(f"stale: {args.dir / name}", file=sys.stderr)
        if stale:
            print("run `make schemas` to regenerate them", file=sys.stderr)
        return 1 if stale else 0
    for name in write(args.dir):
        print(f"wrote {args.dir / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
