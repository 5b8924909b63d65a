"""Markdown (as OCRFlux-3B writes it, with HTML tables) to plain text.

**Ours**: the community server only strips Markdown syntax and leaves HTML in place; here the
result is real text. Tables become one line per row with tab-separated cells, every other tag
is removed and entities are decoded. Code (fenced blocks and inline spans) is kept verbatim.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

from ocrflux.tables import cell_text, text_grid

_SLOT = re.compile(r"\x00(\d+)\x00")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_HTML_TABLE = re.compile(r"<table\b.*?</table\s*>", re.IGNORECASE | re.DOTALL)
_FIGURE = re.compile(r"<Image>.*?</Image>", re.DOTALL)
_RULE = re.compile(r"^ {0,3}(?:=+|(?:-[ \t]*){3,}|(?:\*[ \t]*){3,}|(?:_[ \t]*){3,})$")
_LINK_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*\S+.*$")
_HEADING = re.compile(r"^ {0,3}#{1,6}(?:[ \t]+|$)(.*?)(?:[ \t]+#+)?[ \t]*$")
_QUOTE = re.compile(r"^ {0,3}>[ \t]?")
_BULLET = re.compile(r"^([ \t]*)[-*+][ \t]+")
_PIPE_SEPARATOR = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_AUTOLINK = re.compile(r"<((?:https?|ftp|mailto):[^\s<>]+|[^\s<>@]+@[^\s<>@]+\.[A-Za-z]+)>")
_IMAGE = re.compile(r"!\[[^\]]*\](?:\([^)]*\)|\[[^\]]*\])")
_LINK = re.compile(r"\[([^\]]+)\](?:\([^)]*\)|\[[^\]]*\])")
_EMPHASIS = (
    re.compile(r"(\*\*\*|___)(?=\S)(.+?)(?<=\S)\1"),
    re.compile(r"(\*\*)(?=\S)(.+?)(?<=\S)\1"),
    re.compile(r"(?<!\w)(__)(?=\S)(.+?)(?<=\S)\1(?!\w)"),
    re.compile(r"(~~)(?=\S)(.+?)(?<=\S)\1"),
    re.compile(r"(\*)(?=\S)(.+?)(?<=\S)\1"),
    re.compile(r"(?<!\w)(_)(?=\S)(.+?)(?<=\S)\1(?!\w)"),
)
_BREAK = re.compile(r"<br\s*/?>|</(?:p|div|li|h[1-6]|tr|blockquote)\s*>", re.IGNORECASE)
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]*>", re.DOTALL)
_ROW_END = re.compile(r"</tr\s*>", re.IGNORECASE)
_CELL_END = re.compile(r"</t[dh]\s*>", re.IGNORECASE)
_BLANK_RUN = re.compile(r"\n{3,}")

Protect = Callable[[str], str]


def _table_text(table: str) -> str:
    """One line per row, cells separated by tabs; spanned positions are empty cells."""
    grid = text_grid(table)
    if grid is not None:
        return "\n".join("\t".join(row) for row in grid)
    # Not parseable as one table (nested tables, say): keep the row and cell breaks at least.
    lines: list[str] = []
    for row in _ROW_END.split(table):
        cells = [cell_text(part) for part in _CELL_END.split(row)]
        while cells and not cells[-1]:
            cells.pop()
        if cells:
            lines.append("\t".join(cells))
    return "\n".join(lines)


def _protect_code_blocks(text: str, protect: Protect) -> str:
    out: list[str] = []
    fence: str | None = None
    code: list[str] = []
    for line in text.split("\n"):
        if fence is not None:
            if line.strip().startswith(fence) and not line.strip().strip(fence[0]):
                out.append(protect("\n".join(code)))
                fence, code = None, []
            else:
                code.append(line)
        elif match := _FENCE.match(line):
            fence = match.group(1)
        else:
            out.append(line)
    if fence is not None:  # an unclosed fence runs to the end, as in CommonMark
        out.append(protect("\n".join(code)))
    return "\n".join(out)


def _pipe_row(line: str) -> str:
    cells = line.strip().strip("|").split("|")
    return "\t".join(cell.strip() for cell in cells)


def _strip_block_markers(text: str) -> str:
    out: list[str] = []
    raw = text.split("\n")
    in_pipe_table = False
    for index, line in enumerate(raw):
        if in_pipe_table and "|" in line:
            out.append(_pipe_row(line))
            continue
        in_pipe_table = False
        if _PIPE_SEPARATOR.match(line) and "|" in line and index and "|" in raw[index - 1]:
            out[-1] = _pipe_row(raw[index - 1])
            in_pipe_table = True
            continue
        if _RULE.match(line) or _LINK_DEFINITION.match(line):
            continue
        while quote := _QUOTE.match(line):
            line = line[quote.end() :]
        if heading := _HEADING.match(line):
            line = heading.group(1)
        line = _BULLET.sub(r"\1- ", line)
        out.append(line)
    return "\n".join(out)


def _strip_inline(text: str, protect: Protect) -> str:
    text = _CODE_SPAN.sub(lambda m: protect(m.group(2).strip()), text)
    text = _ESCAPE.sub(lambda m: protect(m.group(1)), text)
    text = _AUTOLINK.sub(lambda m: protect(m.group(1)), text)
    text = _IMAGE.sub("", text)
    text = _LINK.sub(r"\1", text)
    for pattern in _EMPHASIS:
        text = pattern.sub(r"\2", text)
    return text


def _strip_tags(text: str) -> str:
    text = _BREAK.sub("\n", text)
    # Repeat: removing one tag can join the halves of another (`<<b>b>`).
    while (stripped := _TAG.sub("", text)) != text:
        text = stripped
    return text


def markdown_to_text(markdown: str) -> str:
    """Plain text of a Markdown document; paragraphs stay separated by blank lines."""
    slots: list[str] = []

    def protect(fragment: str) -> str:
        slots.append(fragment)
        return f"\x00{len(slots) - 1}\x00"

    text = markdown.replace("\r\n", "\n").replace("\x00", "")
    text = _protect_code_blocks(text, protect)
    text = _FIGURE.sub("", text)
    text = _HTML_TABLE.sub(lambda m: "\n" + protect(_table_text(m.group(0))) + "\n", text)
    text = _strip_block_markers(text)
    text = _strip_inline(text, protect)
    text = html.unescape(_strip_tags(text))
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = _BLANK_RUN.sub("\n\n", text).strip("\n")
    # A slot's text may hold another slot (a code span around a table), hence the loop.
    for _ in range(len(slots) + 1):
        restored = _SLOT.sub(lambda m: slots[int(m.group(1))], text)
        if restored == text:
            break
        text = restored
    return text
