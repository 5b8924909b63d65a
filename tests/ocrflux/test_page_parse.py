"""Strict validation of the page JSON, and the page's element list."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ocrflux.page_parse import (
    AnswerRejected,
    PageAnswer,
    page_elements,
    page_text,
    parse_page_answer,
)

VALID: dict[str, Any] = {
    "primary_language": "en",
    "is_rotation_valid": True,
    "rotation_correction": 0,
    "is_table": False,
    "is_diagram": False,
    "natural_text": "Hello\n\nWorld",
}


def _answer(**changes: Any) -> str:
    return json.dumps({**VALID, **changes})


def test_valid_answer_parses() -> None:
    assert parse_page_answer(_answer()) == PageAnswer(
        primary_language="en",
        is_rotation_valid=True,
        rotation_correction=0,
        is_table=False,
        is_diagram=False,
        natural_text="Hello\n\nWorld",
    )


def test_nulls_and_surrounding_whitespace_are_accepted() -> None:
    answer = parse_page_answer("\n " + _answer(primary_language=None, natural_text=None) + "\n")
    assert answer.primary_language is None
    assert answer.natural_text is None


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_every_valid_rotation(rotation: int) -> None:
    assert parse_page_answer(_answer(rotation_correction=rotation)).rotation_correction == rotation


def test_answer_is_frozen() -> None:
    answer = parse_page_answer(_answer())
    with pytest.raises(AttributeError):
        answer.natural_text = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"primary_language": "en",', "invalid_json"),
        ("", "invalid_json"),
        ("Sure! Here is the JSON: {}", "invalid_json"),
        ("[1, 2]", "not_object"),
        ('"text"', "not_object"),
        (json.dumps({k: v for k, v in VALID.items() if k != "is_table"}), "missing_keys"),
        (_answer(extra=1), "extra_keys"),
        (_answer(rotation_correction=True), "wrong_type"),
        (_answer(rotation_correction=90.0), "wrong_type"),
        (_answer(rotation_correction="90"), "wrong_type"),
        (_answer(is_table=1), "wrong_type"),
        (_answer(is_diagram=0), "wrong_type"),
        (_answer(is_rotation_valid="true"), "wrong_type"),
        (_answer(is_rotation_valid=None), "wrong_type"),
        (_answer(natural_text=["a"]), "wrong_type"),
        (_answer(natural_text=1), "wrong_type"),
        (_answer(primary_language=False), "wrong_type"),
        (_answer(rotation_correction=45), "bad_rotation"),
        (_answer(rotation_correction=-90), "bad_rotation"),
        (_answer(rotation_correction=360), "bad_rotation"),
    ],
)
def test_rejections_carry_a_reason(content: str, reason: str) -> None:
    with pytest.raises(AnswerRejected) as caught:
        parse_page_answer(content)
    assert caught.value.reason == reason
    assert isinstance(caught.value, ValueError)


def test_deeply_nested_json_is_rejected_not_crashing() -> None:
    with pytest.raises(AnswerRejected) as caught:
        parse_page_answer("[" * 100_000 + "]" * 100_000)
    assert caught.value.reason in {"invalid_json", "not_object"}


def test_null_natural_text_is_an_empty_page() -> None:
    assert page_elements(None) == []
    assert page_text([]) == ""


def test_elements_split_on_blank_lines() -> None:
    assert page_elements("# Title\n\nFirst para\nsame para\n\nSecond") == [
        "# Title",
        "First para\nsame para",
        "Second",
    ]


def test_figures_are_dropped() -> None:
    text = "Intro\n\n<Image>(10,20),(300,400)</Image>\n\nAfter"
    assert page_elements(text) == ["Intro", "After"]


def test_figure_marker_inside_text_is_kept() -> None:
    text = "See <Image>(1,2),(3,4)</Image> here"
    assert page_elements(text) == [text]


def test_tables_are_converted_from_matrix_format() -> None:
    table = "<table><tr><td>a</td><td><l></td></tr><tr><td>b</td><td>c</td></tr></table>"
    assert page_elements("Before\n\n" + table) == [
        "Before",
        '<table><tr><td colspan="2">a</td></tr><tr><td>b</td><td>c</td></tr></table>',
    ]


def test_blank_pieces_are_dropped_and_newline_runs_trimmed() -> None:
    text = "\n\nA\n\n\n\n   \n\n\nB\n\n\n<table><tr><td>x</td><td><l></td></tr></table>\n\n"
    assert page_elements(text) == ["A", "B", '<table><tr><td colspan="2">x</td></tr></table>']
    assert page_elements("") == []


def test_indentation_inside_an_element_is_kept() -> None:
    assert page_elements("    code line\n    more") == ["    code line\n    more"]


def test_page_text_joins_elements() -> None:
    assert page_text(page_elements("A\n\nB")) == "A\n\nB"
