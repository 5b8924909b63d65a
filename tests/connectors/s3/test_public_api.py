"""What `connectors.s3` exports, and that the CLI loads it only for `ocrflux connector`."""

from __future__ import annotations

import subprocess
import sys

import connectors.s3
from tests.fixtures.processes import REPO_ROOT


def test_exports() -> None:
    assert sorted(connectors.s3.__all__) == [
        "AccessDenied",
        "ConnectorError",
        "FatalError",
        "LedgerEntry",
        "ObjectChanged",
        "S3Sink",
        "S3SinkSettings",
        "S3Source",
        "S3SourceSettings",
        "StoreUnavailable",
        "TransientError",
        "object_doc_id",
    ]
    for name in connectors.s3.__all__:
        assert getattr(connectors.s3, name) is not None


def test_the_cli_parser_does_not_import_the_connector() -> None:
    code = (
        "import sys, ocrflux.cli; ocrflux.cli.build_parser(); print('connectors.s3' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_connector_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "ocrflux.cli", "connector", "s3-sink", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--out-prefix" in out.stdout and "--format {markdown,text,json,chunks}" in out.stdout
