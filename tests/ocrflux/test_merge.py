"""Merge-pair parsing, table-merge ordering, and the deterministic assembly."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ocrflux.merge import (
    TablePair,
    accept_merged_table,
    assemble,
    is_merged_table_answer,
    merge_tables_without_model,
    parse_merge_pairs,
    run_table_merges,
    table_merge_chains,
    table_pairs,
)
from ocrflux.page_parse import AnswerRejected


def _table(*rows: str) -> str:
    return "<table>" + "".join(f"<tr><td>{row}</td></tr>" for row in rows) + "</table>"


# --- parse_merge_pairs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("[(0, 1), (3, 0)]", [(0, 1), (3, 0)]),
        ("[]", []),
        ("  \n[]\n", []),
        ("[[0,1]]", [(0, 1)]),
        ("[\n  (2, 2),\n  [1, 0]\n]", [(2, 2), (1, 0)]),
        ("[(0,1),]", [(0, 1)]),
    ],
)
def test_pairs_are_parsed(content: str, expected: list[tuple[int, int]]) -> None:
    assert parse_merge_pairs(content, n_previous=4, n_next=4) == expected


def test_out_of_range_and_duplicate_pairs_are_dropped_in_order() -> None:
    content = "[(5, 0), (1, 2), (0, 9), (-1, 0), (1, 2), (0, 0)]"
    assert parse_merge_pairs(content, n_previous=2, n_next=3) == [(1, 2), (0, 0)]


@pytest.mark.parametrize(
    "content",
    [
        "",
        "none",
        "(0, 1)",
        "[(0, 1, 2)]",
        "[(0,)]",
        "[0, 1]",
        "[('0', 1)]",
        "[(0.0, 1)]",
        "[(True, 1)]",
        "{(0, 1)}",
        "((0, 1), (2, 3))",
        "[(0, 1)] and more",
        "The pairs are [(0, 1)]",
        "__import__('os').system('true')",
        "[(0, 1)",
        "[" * 1000 + "]" * 1000,
        "[" + "(0, 1), " * 5000 + "]",
    ],
)
def test_malformed_pair_answers_are_rejected(content: str) -> None:
    with pytest.raises(AnswerRejected) as caught:
        parse_merge_pairs(content, n_previous=5, n_next=5)
    assert caught.value.reason == "not_pairs"


# --- table-merge answers and the model-free merge --------------------------------------------


def test_merged_table_answer_acceptance() -> None:
    table = _table("a", "b")
    assert is_merged_table_answer(f"\n {table}\n")
    assert accept_merged_table(f"\n {table}\n") == table
    assert not is_merged_table_answer("Here it is: " + table)
    assert accept_merged_table(table + " done") is None
    assert (
        accept_merged_table("<table><tr><td>a</td><td><l></td></tr></table>")
        == '<table><tr><td colspan="2">a</td></tr></table>'
    )


def test_model_free_merge_drops_repeated_header() -> None:
    first = "<table><tr><th>Name</th><th>Score</th></tr><tr><td>A</td><td>1</td></tr></table>"
    second = "<table><tr><th> Name </th><th>Score</th></tr><tr><td>B</td><td>2</td></tr></table>"
    assert merge_tables_without_model(first, second) == (
        "<table><tr><th>Name</th><th>Score</th></tr><tr><td>A</td><td>1</td></tr>"
        "<tr><td>B</td><td>2</td></tr></table>"
    )


def test_model_free_merge_keeps_a_different_first_row() -> None:
    first = "<table><tr><td>Name</td><td>Score</td></tr><tr><td>A</td><td>1</td></tr></table>"
    second = "<table><tr><td>C</td><td>3</td></tr></table>"
    assert merge_tables_without_model(first, second) == (
        "<table><tr><td>Name</td><td>Score</td></tr><tr><td>A</td><td>1</td></tr>"
        "<tr><td>C</td><td>3</td></tr></table>"
    )


def test_model_free_merge_inserts_inside_tbody_and_counts_colspans() -> None:
    first = '<table><tbody><tr><td colspan="2">Head</td></tr></tbody></table>'
    second = "<table><tr><td>x</td><td>y</td></tr></table>"
    assert merge_tables_without_model(first, second) == (
        '<table><tbody><tr><td colspan="2">Head</td></tr><tr><td>x</td><td>y</td></tr>'
        "</tbody></table>"
    )


def test_model_free_merge_drops_a_two_row_header() -> None:
    header = '<tr><td rowspan="2">K</td><td>V</td></tr><tr><td>unit</td></tr>'
    first = f"<table>{header}<tr><td>a</td><td>1</td></tr></table>"
    second = f"<table>{header}<tr><td>b</td><td>2</td></tr></table>"
    assert merge_tables_without_model(first, second) == (
        f"<table>{header}<tr><td>a</td><td>1</td></tr><tr><td>b</td><td>2</td></tr></table>"
    )


def test_model_free_merge_refuses_different_widths_or_non_tables() -> None:
    two = "<table><tr><td>a</td><td>b</td></tr></table>"
    three = "<table><tr><td>a</td><td>b</td><td>c</td></tr></table>"
    assert merge_tables_without_model(two, three) is None
    assert merge_tables_without_model("text", two) is None
    assert merge_tables_without_model(two, "<table></table>") is None


# --- chains and the merge driver -------------------------------------------------------------

T = {name: _table(name) for name in ("p4", "p5", "p6", "q1", "q2", "r3", "x")}


def _three_page_table() -> tuple[list[list[str] | None], dict[int, list[tuple[int, int]]]]:
    pages: list[list[str] | None] = [
        ["intro"],
        ["q1 text", T["q1"]],
        [T["q2"]],
        ["filler"],
        ["p4 text", T["p4"]],
        [T["p5"]],
        [T["p6"], "tail"],
    ]
    pairs = {1: [(1, 0)], 4: [(1, 0)], 5: [(0, 0)]}
    return pages, pairs


def test_chains_are_ordered_last_page_pair_first() -> None:
    pages, pairs = _three_page_table()
    assert table_merge_chains(pages, pairs) == [
        [TablePair(5, 0, 0), TablePair(4, 1, 0)],
        [TablePair(1, 1, 0)],
    ]


def test_text_and_mixed_pairs_are_not_table_pairs() -> None:
    pages = [["text", T["x"]], [T["q1"], "more"]]
    assert table_pairs(pages, {0: [(0, 0), (1, 1), (1, 0)]}) == [TablePair(0, 1, 0)]


def test_a_table_used_twice_in_one_page_pair_is_merged_once() -> None:
    pages = [[T["p4"], T["x"]], [T["p5"], T["p6"]]]
    assert table_pairs(pages, {0: [(0, 0), (0, 1), (1, 0), (1, 1)]}) == [
        TablePair(0, 0, 0),
        TablePair(0, 1, 1),
    ]


async def test_three_page_table_merges_in_chain_order() -> None:
    pages, pairs = _three_page_table()
    calls: list[tuple[str, str]] = []

    async def merge(table1: str, table2: str) -> str | None:
        calls.append((table1, table2))
        return f"<table>[{table1}+{table2}]</table>"

    merged = await run_table_merges(table_merge_chains(pages, pairs), pages, merge)

    m56 = f"<table>[{T['p5']}+{T['p6']}]</table>"
    m456 = f"<table>[{T['p4']}+{m56}]</table>"
    assert calls.index((T["p5"], T["p6"])) < calls.index((T["p4"], m56))
    assert len(calls) == 3
    assert merged == {(5, 0): m56, (4, 1): m456, (1, 1): f"<table>[{T['q1']}+{T['q2']}]</table>"}

    text = assemble(pages, pairs, merged)
    assert text.split("\n\n") == [
        "intro",
        "q1 text",
        merged[1, 1],
        "filler",
        "p4 text",
        m456,
        "tail",
    ]


async def test_chains_run_concurrently() -> None:
    pages = [[T["p4"]], [T["p5"], T["q1"]], [T["q2"]]]
    pairs = {0: [(0, 0)], 1: [(1, 0)]}
    chains = table_merge_chains(pages, pairs)
    assert len(chains) == 2
    started = {table: asyncio.Event() for table in (T["p4"], T["q1"])}

    async def merge(table1: str, table2: str) -> str | None:
        started[table1].set()
        other = T["q1"] if table1 == T["p4"] else T["p4"]
        await started[other].wait()  # deadlocks unless both chains are in flight together
        return table1

    merged = await asyncio.wait_for(run_table_merges(chains, pages, merge), timeout=5)
    assert set(merged) == {(0, 0), (1, 1)}


async def test_failed_middle_link_uses_the_original_table() -> None:
    pages, pairs = _three_page_table()
    calls: list[tuple[str, str]] = []

    async def merge(table1: str, table2: str) -> str | None:
        calls.append((table1, table2))
        return None if table1 == T["p5"] else "<table>m</table>"

    merged = await run_table_merges(table_merge_chains(pages, pairs), pages, merge)
    assert (T["p4"], T["p5"]) in calls
    assert merged == {(4, 1): "<table>m</table>", (1, 1): "<table>m</table>"}
    text = assemble(pages, pairs, merged)
    assert text.split("\n\n")[4:] == ["p4 text", "<table>m</table>", T["p6"], "tail"]


async def test_empty_merge_result_counts_as_failure() -> None:
    pages = [[T["p4"]], [T["p5"]]]

    async def merge(table1: str, table2: str) -> str | None:
        return ""

    pairs = {0: [(0, 0)]}
    merged = await run_table_merges(table_merge_chains(pages, pairs), pages, merge)
    assert merged == {}


# --- assembly --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tail", "head", "joined"),
    [
        ("an exam-", "ple of it", "an exam-ple of it"),
        ("这是一个", "例子", "这是一个例子"),
        ("ends with a word", "continues", "ends with a word continues"),
        ("ends with a full stop.", "Next", "ends with a full stop. Next"),
        ("数字１", "x", "数字１ x"),  # a fullwidth digit is outside U+4E00..U+9FFF
        ("日本語の文章です。", "続き", "日本語の文章です。 続き"),  # so is "。"
    ],
)
def test_text_join_rules(tail: str, head: str, joined: str) -> None:
    pages = [["before", tail], [head, "after"]]
    assert assemble(pages, {0: [(1, 0)]}, {}) == f"before\n\n{joined}\n\nafter"


def test_paragraph_over_three_pages_joins_last_pair_first() -> None:
    pages = [["one", "a long"], ["para-"], ["graph", "end"]]
    pairs = {0: [(1, 0)], 1: [(0, 0)]}
    assert assemble(pages, pairs, {}) == "one\n\na long para-graph\n\nend"


def test_failed_table_merge_leaves_two_elements() -> None:
    pages = [["x", T["p4"]], [T["p5"], "y"]]
    assert assemble(pages, {0: [(1, 0)]}, {}) == f"x\n\n{T['p4']}\n\n{T['p5']}\n\ny"


def test_successful_table_merge_has_no_trailing_space() -> None:
    pages = [[T["p4"]], [T["p5"], "y"]]
    assert assemble(pages, {0: [(0, 0)]}, {(0, 0): "<table>m</table>"}) == ("<table>m</table>\n\ny")


def test_mixed_table_and_text_pair_is_a_text_pair() -> None:
    pages = [["Table 1: results"], [T["x"]]]
    assert assemble(pages, {0: [(0, 0)]}, {}) == f"Table 1: results {T['x']}"


def test_model_order_within_a_page_pair_is_kept() -> None:
    pages = [["a", "b"], ["c"]]
    # Both point at element 0 of page 1: the first wins, the second is a no-op.
    assert assemble(pages, {0: [(1, 0), (0, 0)]}, {}) == "a\n\nb c"


def test_merges_for_unknown_or_non_table_pairs_are_ignored() -> None:
    pages = [["a", "b"], ["c"]]
    assert assemble(pages, {0: [(0, 0)]}, {(0, 0): "<table>m</table>", (1, 0): "z"}) == ("a c\n\nb")


def test_pairs_outside_the_pages_are_ignored() -> None:
    pages: list[list[str] | None] = [["a"], None, ["c"]]
    assert assemble(pages, {0: [(0, 0)], 1: [(0, 0)], 2: [(0, 0)], 7: [(9, 9)]}, {}) == "a\n\nc"


def test_inputs_are_not_mutated() -> None:
    pages = [["a-"], ["b"]]
    pairs = {0: [(0, 0)]}
    assert assemble(pages, pairs, {}) == "a-b"
    assert pages == [["a-"], ["b"]]
    assert pairs == {0: [(0, 0)]}


def test_empty_elements_and_blank_pages_are_not_emitted() -> None:
    assert assemble([["a", ""], None, [], ["b"]], {}, {}) == "a\n\nb"
    assert assemble([], {}, {}) == ""


_ELEMENT = st.text(st.characters(codec="utf-8", exclude_characters="\n"), min_size=1, max_size=8)
_PAGES = st.lists(st.one_of(st.none(), st.lists(_ELEMENT, max_size=5)), max_size=6)


@given(_PAGES)
def test_assembly_without_pairs_loses_and_duplicates_nothing(
    pages: list[list[str] | None],
) -> None:
    expected = [element for elements in pages if elements for element in elements]
    text = assemble(pages, {}, {})
    assert (text.split("\n\n") if text else []) == expected


@given(_PAGES, st.data())
def test_text_merges_keep_every_character(
    pages: list[list[str] | None], data: st.DataObject
) -> None:
    pages = [[e.replace("<", "") for e in elements] if elements else elements for elements in pages]
    pairs: dict[int, list[tuple[int, int]]] = {}
    for p in range(len(pages) - 1):
        first, second = pages[p], pages[p + 1]
        if first and second:
            index_pairs = st.tuples(st.integers(0, len(first) - 1), st.integers(0, len(second) - 1))
            pairs[p] = data.draw(st.lists(index_pairs, max_size=3))
    text = assemble(pages, pairs, {})
    original = Counter("".join(e for elements in pages if elements for e in elements))
    result = Counter(text)
    for separator in (" ", "\n"):
        original.pop(separator, None)
        result.pop(separator, None)
    assert result == original
