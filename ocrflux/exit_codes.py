"""Exit codes shared by every `ocrflux` command."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schemas.results import DocumentStatus

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_USAGE",
    "exit_for_status",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: Some pages were not recognized by the model (fallback pages): usable, but not the whole answer.
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130


def exit_for_status(status: DocumentStatus, allow_partial: bool) -> int:
    """The exit code for one document's result status."""
    if status == "failed":
        return EXIT_FAILED
    if status == "partial" and not allow_partial:
        return EXIT_PARTIAL
    return EXIT_OK
