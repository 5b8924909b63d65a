"""`ocrflux convert` ends without the interpreter's teardown (`ocrflux.cli._exit_now`): its
output is complete and its render processes end with it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from ocrflux.render_pool import COLD_START_PAGES
from tests.scenarios import DocumentCase, pdf_with_lines, register

PAGES = COLD_START_PAGES  # enough for a cold pool to start its processes


def processes_with(marker: str) -> list[int]:
    """PIDs of the live processes whose environment holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # ended meanwhile, or not ours to read
            continue
        if marker.encode() in environ:
            found.append(int(entry.name))
    return found


def test_a_pooled_conversion_writes_everything_and_leaves_no_process(
    ocrflux_server: Any, tmp_path: Path
) -> None:
    texts = [f"Page {n} says something of its own." for n in range(PAGES)]
    case = DocumentCase("long.pdf", pdf_with_lines([[text] for text in texts]), texts)
    register(ocrflux_server, case)
    source = tmp_path / "long.pdf"
    source.write_bytes(case.data)
    marker = f"H2_RENDER_POOL_TEST={uuid.uuid4().hex}"
    name, _, value = marker.partition("=")
    env = {**os.environ, name: value, "OCRFLUX_RENDER_PROCESSES": "2"}
    flags = ["--skip-cross-page-merge", "--vllm-url", ocrflux_server.url, "--engine", "vllm"]
    done = subprocess.run(
        [sys.executable, "-m", "ocrflux.cli", "convert", str(source), *flags],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "\n\n".join(texts) + "\n"  # all of it, through the pipe
    assert f"page {PAGES}/{PAGES}" in done.stderr
    assert "starting 2 render processes" in done.stderr
    assert processes_with(marker) == []
