"""Markdown with HTML tables to real plain text."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocrflux.plaintext import markdown_to_text

_TAG = re.compile(r"</?[A-Za-z][^<>]*>")


@pytest.mark.parametrize(
    ("markdown", "text"),
    [
        ("# Title", "Title"),
        ("###### Deep ##", "Deep"),
        ("#hashtag", "#hashtag"),
        (
            "Some **bold**, __strong__, *em*, _em_ and ***both***.",
            "Some bold, strong, em, em and both.",
        ),
        ("~~gone~~ kept", "gone kept"),
        ("snake_case_name and 2 * 3 * 4", "snake_case_name and 2 * 3 * 4"),
        ("Use `a *b* c` here", "Use a *b* c here"),
        ('A [link](http://example.com "title") here', "A link here"),
        ("A [ref link][1] here\n\n[1]: http://example.com", "A ref link here"),
        ("Before ![alt](img.png) after", "Before  after"),
        (
            "Mail <me@example.com> or <https://x.org/a?b=1>",
            "Mail me@example.com or https://x.org/a?b=1",
        ),
        ("Escaped \\*stars\\* and \\_under\\_", "Escaped *stars* and _under_"),
        ("Fish &amp; chips &lt;3 &eacute;", "Fish & chips <3 é"),
        ("line one<br>line two", "line one\nline two"),
        ('<p>para</p><span class="x">inline</span>', "para\ninline"),
        ("a <!-- comment --> b", "a  b"),
        ("<<b>b>nested", "nested"),
    ],
)
def test_inline_and_heading_markup(markdown: str, text: str) -> None:
    assert markdown_to_text(markdown) == text


def test_lists_and_quotes() -> None:
    markdown = "- one\n* two\n+ three\n  - nested *em*\n1. first\n2) second\n\n> quoted\n> > deeper"
    assert markdown_to_text(markdown) == (
        "- one\n- two\n- three\n  - nested em\n1. first\n2) second\n\nquoted\ndeeper"
    )


def test_rules_and_setext_underlines_are_dropped() -> None:
    assert markdown_to_text("Title\n=====\n\nText\n\n---\n\n***\n\nMore") == (
        "Title\n\nText\n\nMore"
    )


def test_code_fences_are_removed_and_code_kept_verbatim() -> None:
    markdown = "Before\n\n```python\nx = a * b * c  # **not bold**\n\n\n\ny = 1\n```\n\nAfter"
    assert markdown_to_text(markdown) == (
        "Before\n\nx = a * b * c  # **not bold**\n\n\n\ny = 1\n\nAfter"
    )


def test_unclosed_fence_runs_to_the_end() -> None:
    assert markdown_to_text("Text\n\n~~~\ncode *x*") == "Text\n\ncode *x*"


def test_html_table_becomes_tab_separated_rows() -> None:
    markdown = (
        "Results:\n\n"
        "<table><tr><th>Name</th><th>Score &amp; rank</th></tr>"
        "<tr><td>A <b>x</b></td><td>1<br>2</td></tr></table>\n\nAfter"
    )
    assert markdown_to_text(markdown) == "Results:\n\nName\tScore & rank\nA x\t1 2\n\nAfter"


def test_spanning_cells_are_padded_so_columns_line_up() -> None:
    markdown = (
        '<table><tr><td>Name</td><td colspan="2">Score</td></tr>'
        '<tr><td rowspan="2">A</td><td>1</td><td>2</td></tr>'
        "<tr><td>3</td><td>4</td></tr></table>"
    )
    assert markdown_to_text(markdown) == "Name\tScore\t\nA\t1\t2\n\t3\t4"
    assert all(line.count("\t") == 2 for line in markdown_to_text(markdown).split("\n"))


def test_unparseable_table_still_loses_its_tags() -> None:
    markdown = "<table><tr><td><table><tr><td>in</td></tr></table></td><td>b</td></tr></table>"
    text = markdown_to_text(markdown)
    assert "<" not in text
    assert "in" in text and "b" in text


def test_pipe_table_becomes_tab_separated_rows() -> None:
    markdown = "| h1 | **h2** |\n|:---|---:|\n| a | b |\n| c | d |\n\nNext"
    assert markdown_to_text(markdown) == "h1\th2\na\tb\nc\td\n\nNext"


def test_figures_are_removed() -> None:
    assert markdown_to_text("A\n\n<Image>(1,2),(3,4)</Image>\n\nB") == "A\n\nB"


def test_paragraph_separation_is_preserved() -> None:
    markdown = "# Head\n\nPara one\nstill one.\n\nPara two\n\n\n\nPara three"
    assert markdown_to_text(markdown) == "Head\n\nPara one\nstill one.\n\nPara two\n\nPara three"


def test_full_document_has_no_tags() -> None:
    markdown = (
        "# Report\n\nIntro with <sup>1</sup> and <i>italics</i>.\n\n"
        '<table><tr><td rowspan="2">K</td><td>v</td></tr><tr><td>w</td></tr></table>\n\n'
        '<div align="center">centered</div>'
    )
    text = markdown_to_text(markdown)
    assert not _TAG.search(text)
    assert text == "Report\n\nIntro with 1 and italics.\n\nK\tv\n\tw\n\ncentered"


@given(st.text(alphabet=st.sampled_from(list("ab <>/\n*_#`[]()!&;|-td")), max_size=60))
def test_no_tag_survives_outside_code(markdown: str) -> None:
    text = markdown_to_text(markdown.replace("`", ""))
    assert not _TAG.search(text)
