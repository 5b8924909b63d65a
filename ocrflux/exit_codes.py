"""Exit codes shared by every `ocrflux` command, and the `--help` text that lists them.

    0    success
    1    failure: an input that cannot be read, an output that cannot be written, a document that
         failed, Kafka or the local broker not answering
    2    usage error: a bad flag or argument, or an invalid or missing setting (a variable)
    3    partial result: some pages were not recognized by the model (fallback pages)
    130  interrupted

Each command's `--help` says what they mean for it (`exit_status_help`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schemas.results import DocumentStatus

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "USAGE_MEANING",
    "exit_for_status",
    "exit_status_help",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: Some pages were not recognized by the model (fallback pages): usable, but not the whole answer.
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130

#: What exit status 2 means for every command.
USAGE_MEANING = "usage error: a bad flag or argument, or an invalid or missing setting (variable)"

_WIDTH = 88


def exit_for_status(status: DocumentStatus, allow_partial: bool) -> int:
    """The exit code for one document's result status."""
    if status in ("failed", "cancelled"):
        return EXIT_FAILED
    if status == "partial" and not allow_partial:
        return EXIT_PARTIAL
    return EXIT_OK


def exit_status_help(meanings: Mapping[int, str], heading: str = "exit status") -> str:
    """An epilog section: one wrapped entry per exit code (for `RawDescriptionHelpFormatter`)."""
    lines = [f"{heading}:"]
    for code, meaning in meanings.items():
        first, *rest = textwrap.wrap(meaning, _WIDTH - 7)
        lines.append(f"  {code:<4} {first}")
        lines.extend(f"       {line}" for line in rest)
    return "\n".join(lines) + "\n"
