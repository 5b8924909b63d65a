"""Where a worker's CPU goes beyond our own stages: py-spy samples of the thread holding the GIL
(`py-spy record --gil`), each stack put in the group of its innermost library frame.

py-spy is a benchmark-only tool (`make bench` installs it into .venv); without it the
attribution is skipped and said so.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

RATE_HZ = 200
OURS = "ours"
#: The consume loop, commits and table: faust and mode, or the stream runtime that replaces them.
FRAMEWORK = "stream framework (faust/mode or streams/runtime)"
#: (group, path fragments of its frames); the innermost frame that matches one decides.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Kafka client (aiokafka)", ("aiokafka/",)),
    ("HTTP client (aiohttp)", ("aiohttp/", "yarl/", "multidict/")),
    (FRAMEWORK, ("faust/", "mode/", "streams/runtime/")),
    (
        OURS,
        (
            "ocrflux/",
            "schemas/",
            "streams/",
            "connectors/",
            "pydantic/",
            "pydantic_core/",
            "pymupdf/",
            "base64.py",
            "json/",
        ),
    ),
)
OTHER = "asyncio loop, threads, other"


def pyspy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


@contextmanager
def profiled(pids: Mapping[str, int], out_dir: Path) -> Iterator[dict[str, Path]]:
    """py-spy on each process while the block runs; yields the raw output file of each."""
    binary = pyspy()
    if binary is None:
        yield {}
        return
    outputs = {name: out_dir / f"pyspy-{name}.txt" for name in pids}
    spies = [
        subprocess.Popen(
            [
                *(binary, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--gil"),
                *("--nonblocking", "--format", "raw", "--output", str(outputs[name])),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]
    try:
        yield outputs
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for spy in spies:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()


def group_of(stack: str) -> str:
    for frame in reversed(stack.split(";")):
        for group, fragments in GROUPS:
            if any(fragment in frame for fragment in fragments):
                return group
    return OTHER


def groups(raw: Path) -> Counter[str]:
    """Samples per group in a py-spy raw (collapsed stacks) file."""
    found: Counter[str] = Counter()
    if not raw.exists():
        return found
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            found[group_of(stack)] += int(count)
    return found
