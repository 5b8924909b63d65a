"""Every stream benchmark in one run on one Kafka broker: `python -m bench.suite [--quick]
[--out FILE] [NAME...]` (`make bench-stream`, part of `make bench`). Each benchmark rewrites its
own section of BENCHMARKS.md (or FILE); this writes the summary of their goals.

NAME is any of saturation, documents, timeline, overhead, latency, memory, compare (default:
all, in that order). `--quick` runs each at a small size, once: a smoke check of a few minutes
whose numbers are not results (write them elsewhere with `--out`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from types import ModuleType

from bench import (
    bench_compare,
    bench_documents,
    bench_latency,
    bench_memory,
    bench_overhead,
    bench_saturation,
    bench_timeline,
    harness,
)
from bench.report import BENCHMARKS, Section, header, load_average, table, write_section

MODULES: dict[str, ModuleType] = {
    "saturation": bench_saturation,
    "documents": bench_documents,
    "timeline": bench_timeline,
    "overhead": bench_overhead,
    "latency": bench_latency,
    "memory": bench_memory,
    "compare": bench_compare,
}
TITLE = "Stream pipeline: summary"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.suite", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME")
    parser.add_argument("--quick", action="store_true", help="small sizes, one run: a smoke check")
    parser.add_argument("--out", type=Path, default=BENCHMARKS, help="write the sections here")
    args = parser.parse_args(argv)
    names = args.names or list(MODULES)
    unknown = sorted(set(names) - set(MODULES))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; choose from {', '.join(MODULES)}")
    started, load_before = time.time(), load_average()
    sections: list[Section] = []
    with harness.workdir("bench") as work, harness.kafka(work) as broker:
        for name in names:
            began = time.monotonic()
            print(f"== {name}", file=sys.stderr)
            section = MODULES[name].measure(broker, work, args.quick)
            write_section(section.title, section.body, args.out)
            sections.append(section)
            print(f"== {name}: {time.monotonic() - began:.0f} s", file=sys.stderr)
        version = broker.version
    if set(names) == set(MODULES):
        write_section(TITLE, summary(sections, version, started, load_before), args.out)
    return 0


def summary(sections: list[Section], kafka_version: str, started: float, load: str) -> str:
    commands = [
        "`make bench` runs `make bench-stream` (`python -m bench.suite`: the seven sections "
        "below, on one broker), `make bench-local` and `make bench-api`; each benchmark also "
        "runs alone (`--quick` for a small smoke check, `--out FILE` to write elsewhere): "
        + ", ".join(f"`{module.COMMAND}`" for module in MODULES.values())
        + ".",
        f"Load average (1/5/15 min) when the suite started: {load}. Other work shared the "
        "machine's 2 cores; wall-clock rows say how busy the machine was.",
        "The test double (tests/fakes) stands in for the GPU: C slots, seeded service times. "
        "With the cross-page merge on, the reference is the dependency-aware ideal "
        "(bench/ideal.py: a perfect scheduler on the same slots and service times); every "
        "pipeline row counts the model requests by kind against what the direct driver needs.",
    ]
    rows = [list(row) for section in sections for row in section.goals]
    return "\n".join(
        [
            header("python -m bench.suite", kafka_version, started, commands),
            "",
            table(["goal", "measured (medians)", "verdict"], rows),
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
