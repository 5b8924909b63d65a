"""RELIABILITY.md from the rows: the header (date, machine, Kafka, commit, total time), the goal,
the summary, one table per group, the bad-input kinds one by one, and the evidence of every
row that misses its goal."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence

from bench.harness import REPO
from bench.reliability.bad_input_run import KindResult
from bench.reliability.rows import MEMORY_BOUND_MIB, Row, requests_cell
from bench.report import load_average, machine, table

COLUMNS = (
    "case",
    "driver",
    "expected",
    "observed",
    "verdict",
    "completed / partial / failed of sent",
    "lost",
    "duplicated",
    "fallback pages",
    "recovery",
    "peak RSS (MiB)",
    "model requests made/needed",
    "time",
)


def commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, check=False, timeout=30
        )
        return done.stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return sha + (" with uncommitted changes in the working tree" if dirty else "")


def verdict(row: Row) -> str:
    return "holds" if row.holds else "**MISSED**: " + "; ".join(row.misses)


def _duplicated(row: Row) -> str:
    if not row.duplicated:
        return "0"
    if not row.differing:
        return f"{row.duplicated} (byte-identical)"
    return f"{row.duplicated} (**{row.differing} differ**)"


def _peaks(row: Row) -> str:
    if not row.peak_rss_mib:
        return "-"
    return ", ".join(f"{name} {peak:.0f}" for name, peak in sorted(row.peak_rss_mib.items()))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def row_cells(row: Row) -> list[str]:
    recovery = "-" if row.recovery_s is None else f"{row.recovery_s:.1f} s"
    return [
        _cell(row.case),
        _cell(row.driver),
        _cell(row.expected),
        _cell(row.observed),
        _cell(verdict(row)),
        f"{row.completed} / {row.partial} / {row.failed} of {row.submitted}",
        str(row.lost),
        _duplicated(row),
        str(row.fallback_pages),
        recovery,
        _cell(_peaks(row)),
        _cell(requests_cell(row)),
        f"{row.duration_s:.0f} s",
    ]


def kinds_table(kinds: Sequence[KindResult]) -> str:
    rows = []
    for result in kinds:
        cells = [_cell(result.kind.kind), _cell(result.kind.expected_text)]
        for driver in ("convert", "API", "submit"):
            seen = result.seen.get(driver)
            if seen is None:
                cells.append("n/a")
            else:
                cells.append(_cell(seen.shown) + ("" if seen.ok else " **MISSED**"))
        cells.append(result.dlq or "-")
        rows.append(cells)
    headers = ["kind", "expected", "ocrflux convert", "API /convert/file", "submit --wait", "dlq"]
    return table(headers, rows)


def render(
    rows: Sequence[Row],
    kinds: Sequence[KindResult],
    *,
    started: float,
    kafka_version: str,
    load_before: str,
    notes: Sequence[str],
) -> str:
    holding = [row for row in rows if row.holds]
    missing = [row for row in rows if not row.holds]
    lines = [
        "# Reliability",
        "",
        "Written by `make reliability` (`python -m bench.reliability`); do not edit by hand. "
        "Every case runs against real processes: a Kafka broker of the command's own (started, "
        "killed and stopped by it), worker and API processes, and the OCRFlux-3B test double "
        "(`tests/fakes`, an OpenAI-compatible server that answers like the model; not a model).",
        "",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M %Z', time.localtime(started))}; total time "
        f"{(time.time() - started) / 60:.1f} min.",
        f"- Machine: {machine()}; load average (1/5/15 min) at the start {load_before}, at the "
        f"end {load_average()} (other work shared the machine).",
        f"- Kafka {kafka_version} (single node, loopback); commit {commit()}.",
        *(f"- {note}" for note in notes),
        "",
        "## Goal",
        "",
        "In every row: 0 documents lost, 0 differing duplicates, 0 results degraded by an outage "
        f"or by back-pressure, and bounded memory (each process under test below "
        f"{MEMORY_BOUND_MIB:.0f} MiB peak RSS, VmHWM). Each row also states what its case "
        "must do (a status, an error code, an exit code); a row that misses either is marked "
        "**MISSED** with the reason, and its log excerpt is at the end.",
        "",
        "## Summary",
        "",
        f"{len(holding)} of {len(rows)} rows hold."
        + (
            " Rows that miss: " + "; ".join(f"{row.case} ({row.driver})" for row in missing) + "."
            if missing
            else ""
        ),
        "",
    ]
    for group in dict.fromkeys(row.group for row in rows):
        lines += [
            f"## {group}",
            "",
            table(COLUMNS, [row_cells(r) for r in rows if r.group == group]),
        ]
        lines.append("")
    if kinds:
        lines += ["## Bad input, kind by kind", "", kinds_table(kinds), ""]
    if missing:
        lines += ["## Evidence for the rows that miss", ""]
        for row in missing:
            lines += [f"### {row.case} ({row.driver})", "", "; ".join(row.misses) + "."]
            if row.evidence:
                lines += ["", "```", row.evidence.strip(), "```"]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
