"""The page answer of OCRFlux-3B (task A): strict validation, then the page's element list.

A rejected answer raises `AnswerRejected`, which the task runner counts as a used attempt.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ocrflux.tables import is_table, matrix_to_html

ROTATIONS = frozenset({0, 90, 180, 270})

_FIELDS: dict[str, tuple[type, ...]] = {
    "primary_language": (str, type(None)),
    "is_rotation_valid": (bool,),
    "rotation_correction": (int,),
    "is_table": (bool,),
    "is_diagram": (bool,),
    "natural_text": (str, type(None)),
}


class AnswerRejected(ValueError):
    """A model answer that does not follow the expected format.

    `reason` is short and stable (for logs and metrics): "invalid_json", "not_object",
    "missing_keys", "extra_keys", "wrong_type", "bad_rotation", "not_pairs", "not_table".
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class PageAnswer:
    """The six keys of the page JSON, validated."""

    primary_language: str | None
    is_rotation_valid: bool
    rotation_correction: int
    is_table: bool
    is_diagram: bool
    natural_text: str | None


def _type_ok(value: Any, allowed: tuple[type, ...]) -> bool:
    # bool is a subclass of int: `true` must not pass as a rotation, nor `1` as a flag.
    if isinstance(value, bool):
        return bool in allowed
    return isinstance(value, allowed)


def parse_page_answer(content: str) -> PageAnswer:
    """Validate the whole answer as the page JSON object, or raise `AnswerRejected`."""
    try:
        data = json.loads(content)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise AnswerRejected("invalid_json", str(exc)) from exc
    if not isinstance(data, dict):
        raise AnswerRejected("not_object", type(data).__name__)
    missing = _FIELDS.keys() - data.keys()
    if missing:
        raise AnswerRejected("missing_keys", ", ".join(sorted(missing)))
    extra = data.keys() - _FIELDS.keys()
    if extra:
        raise AnswerRejected("extra_keys", ", ".join(sorted(extra)))
    for key, allowed in _FIELDS.items():
        if not _type_ok(data[key], allowed):
            raise AnswerRejected("wrong_type", f"{key}: {type(data[key]).__name__}")
    if data["rotation_correction"] not in ROTATIONS:
        raise AnswerRejected("bad_rotation", str(data["rotation_correction"]))
    return PageAnswer(**data)


def is_figure(element: str) -> bool:
    """Whether a whole element is a figure box, `<Image>(left,top),(right,bottom)</Image>`."""
    return element.startswith("<Image>") and element.endswith("</Image>")


def page_pieces(natural_text: str | None) -> Iterator[str]:
    """The page's pieces in order, figure boxes included: split on blank lines, surrounding
    newlines trimmed, blank pieces dropped."""
    if natural_text is None:
        return
    for piece in natural_text.split("\n\n"):
        element = piece.strip("\n")
        if element.strip():
            yield element


def page_elements(natural_text: str | None) -> list[str]:
    """The page's final element list: the one numbered in the merge-detection prompt.

    Split on blank lines; figure boxes dropped; tables converted from the matrix format.
    **Ours**: surrounding newlines left by runs of three or more are trimmed and blank pieces
    dropped, so that every element has content and the indices the model sees in prompt B
    address exactly the elements that assembly emits. `None` (a blank page) gives `[]`.
    """
    return [
        matrix_to_html(piece) if is_table(piece) else piece
        for piece in page_pieces(natural_text)
        if not is_figure(piece)
    ]


def page_text(elements: Sequence[str]) -> str:
    """A page's text before any cross-page merge (`page_texts` in the result)."""
    return "\n\n".join(elements)
