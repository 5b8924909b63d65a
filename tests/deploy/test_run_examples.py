"""`make run`'s script on the session broker: every sample document comes back as Markdown,
read by the CPU `local` engine (no GPU, no vLLM)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.kafka


def test_every_sample_document_becomes_markdown(
    kafka_bootstrap: str, unique_name: str, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("VLLM_URL", "OCRFLUX_ENGINE")}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        OCRFLUX_TOPIC_PREFIX=unique_name,
        OCRFLUX_HOME=str(tmp_path / "home"),
    )
    folder = tmp_path / "examples"
    done = subprocess.run(
        [sys.executable, "-m", "deploy.run_examples", "--folder", str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 documents: 3 completed, 0 partial, 0 failed" in done.stdout
    assert "engine: local (CPU)" in done.stdout

    report = (folder / "quarterly-report.md").read_text()
    assert report.startswith("# Quarterly Operations Report")
    # The paragraph that runs over the page break comes back whole.
    assert "so that a paragraph or a table that runs over a page break comes out whole" in report
    assert "cross-page merge exists for, because a reader expects one paragraph rather" in report
    assert "<td>North</td><td>18,200</td><td>240,100</td><td>1.8 s</td>" in report
    article = (folder / "two-column-article.md").read_text()
    assert article.index("Streaming recognition") < article.index("Because the pages")
    letter = (folder / "scanned-letter.md").read_text()  # no text layer: OCR
    assert "Dear Ms. Lindqvist" in letter and "Martin Okafor" in letter
