"""One row of RELIABILITY.md: a case, what was expected and observed, the counts the goal is
judged on, and whether the row holds. Rows are plain data; `report.py` turns them into Markdown.

The goal of every row: 0 documents lost, 0 differing duplicates, 0 results degraded by an outage
(or by back-pressure), and bounded memory (every process under test below `MEMORY_BOUND_MIB`).
A row adds its own expectation on top (an error code, a status, an exit code): `holds` is the
conjunction, and `misses` says which part failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The bound on the peak resident memory (VmHWM) of each process under test. A worker or API
#: process at rest takes about 150-250 MiB; the documents are small, so anything near a GiB
#: means something is held that should not be (all uploads, a whole topic, a 5 MB answer per
#: page many times over).
MEMORY_BOUND_MIB = 1024.0


@dataclass
class Row:
    """One case of one matrix, as measured."""

    group: str
    case: str
    driver: str
    expected: str
    observed: str = ""
    submitted: int = 0
    completed: int = 0
    partial: int = 0
    failed: int = 0
    lost: int = 0
    duplicated: int = 0
    differing: int = 0
    fallback_pages: int = 0
    equal_to_baseline: int = 0  # completed with the direct driver's no-fault text
    codes: dict[str, int] = field(default_factory=dict)  # error codes of the results not completed
    #: results degraded although the model only went away or pushed back (not a bad answer)
    degraded_by_outage: int = 0
    recovery_s: float | None = None
    peak_rss_mib: dict[str, float] = field(default_factory=dict)
    requests: dict[str, int] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=dict)  # requests answered with HTTP 200
    needed: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    #: the row's own expectation (beyond the shared goal) was met
    expectation_met: bool = True
    #: why the expectation was not met, and log lines that show it
    misses_detail: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # one line per document, as it ended
    evidence: str = ""

    def miss(self, why: str) -> None:
        self.expectation_met = False
        self.misses_detail.append(why)

    @property
    def memory_bounded(self) -> bool:
        return all(peak < MEMORY_BOUND_MIB for peak in self.peak_rss_mib.values())

    @property
    def misses(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"{self.lost} lost")
        if self.differing:
            found.append(f"{self.differing} differing duplicates")
        if self.degraded_by_outage:
            found.append(f"{self.degraded_by_outage} degraded by an outage")
        if not self.memory_bounded:
            found.append(f"memory over {MEMORY_BOUND_MIB:.0f} MiB")
        return found + self.misses_detail

    @property
    def holds(self) -> bool:
        return self.expectation_met and not self.misses


def requests_cell(row: Row) -> str:
    """`page 26/20 (24 answered), detect 9/8, ...`: requests made / needed with no fault, and
    how many of them the double answered when not all (the rest: injected errors, dropped
    connections, requests whose client went away)."""
    requests, needed = row.requests, row.needed
    known: tuple[str, ...] = ("page", "detect", "table_merge")
    tasks = [task for task in known if task in requests or task in needed]
    tasks += sorted(set(requests) - set(tasks) - {"unknown", "invalid"})
    parts = []
    for task in tasks:
        made = requests.get(task, 0)
        part = f"{task} {made}/{needed[task]}" if task in needed else f"{task} {made}"
        answered = row.answered.get(task)
        if answered is not None and answered != made:
            part += f" ({answered} answered)"
        parts.append(part)
    for task, what in (("unknown", "refused while down"), ("invalid", "cut off (400)")):
        if requests.get(task):
            parts.append(f"{what} {requests[task]}")
    return ", ".join(parts) or "-"
