"""Numbers to Markdown for BENCHMARKS.md: min / median / max cells, tables, the machine and
versions line, and the replacement of one benchmark's own section (others are kept)."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import psutil

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"


@dataclass(frozen=True)
class Spread:
    """Min, median and max of a few runs."""

    low: float
    mid: float
    high: float
    runs: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        if not values:
            raise ValueError("no values")
        return cls(min(values), statistics.median(values), max(values), len(values))

    def cell(self, fmt: str = "{:.1f}", scale: float = 1.0) -> str:
        low, mid, high = (fmt.format(v * scale) for v in (self.low, self.mid, self.high))
        return f"{low} / **{mid}** / {high}"


@dataclass
class Section:
    """One benchmark's section of BENCHMARKS.md, and its goals for the summary:
    (goal, measured, verdict) rows."""

    title: str
    body: str
    goals: list[tuple[str, str, str]] = field(default_factory=list)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    ram = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} cores ({cpu_model()}), {ram:.0f} GiB RAM, {platform.platform()}"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f} / {five:.1f} / {fifteen:.1f}"


def versions(kafka_version: str) -> str:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    packages = ("faust-streaming", "aiokafka", "confluent-kafka", "pymupdf", "aiohttp", "pydantic")
    listed = ", ".join(f"{name} {version(name)}" for name in packages)
    return f"Python {platform.python_version()}, Kafka {kafka_version}, {listed}"


#: The first note of a section written by a `--quick` run.
QUICK_NOTE = "**Quick mode (`--quick`): a smoke check at a small size, not a result.**"


def header(
    command: str,
    kafka_version: str,
    started: float,
    notes: Sequence[str] = (),
    *,
    quick: bool = False,
) -> str:
    """The lines every stream benchmark section opens with (`quick`: marked as a smoke check)."""
    notes = [QUICK_NOTE, *notes] if quick else notes
    lines = [
        f"`{command}` ({time.strftime('%Y-%m-%d %H:%M', time.localtime(started))}, "
        f"{time.time() - started:.0f} s).",
        "",
        f"- Machine: {machine()}; load average at the end (1/5/15 min): {load_average()}.",
        f"- Versions: {versions(kafka_version)}.",
        *(f"- {note}" for note in notes),
    ]
    return "\n".join(lines)


def write_section(title: str, body: str, path: Path = BENCHMARKS) -> None:
    """Replace (or append) the `## title` section of BENCHMARKS.md, keeping every other one."""
    text = f"## {title}\n\n{body.strip()}\n"
    if not path.exists():
        path.write_text("# Benchmarks\n\n" + text)
        return
    current = path.read_text()
    marker = f"## {title}\n"
    start = current.find(marker)
    if start < 0:
        path.write_text(current.rstrip("\n") + "\n\n" + text)
        return
    end = current.find("\n## ", start + len(marker))
    rest = current[end + 1 :] if end >= 0 else ""
    path.write_text(current[:start] + text + ("\n" + rest if rest else ""))


def goal(met: bool) -> str:
    return "met" if met else "**missed**"


def runs(count: int, measure: Callable[[int], float]) -> Spread:
    return Spread.of([measure(n) for n in range(count)])
