"""Documents with real cross-page merges for the benchmarks, their expected text, and how the
test double learns them.

Every 8 pages repeat one pattern: a paragraph over pages 1-2, a hyphenated word over pages 7-8
and, with `tables`, a table over pages 4-6 (a chain: two table merges, the second after the
first). So an 8-page document needs 8 page calls, 7 detections and 2 table merges; its lower
bound at C=8 and 0.25 s is 1.0 s (one page wave, one detection wave, two chained merges).
Without tables it needs 15 calls (40 of them at C=32 and 1 s: 18.75 s of work).

The page images come from `harness.make_pdf` (30 lines of words: 724 x 1024 px grey PNGs of
about 37 KB, every page different); what "the model" reads on them is registered with the double
under the SHA-256 of the PNG the pipeline will send (`--page-key bytes`). The expected text is
written out by construction, not computed by the code under test.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bench import harness, ideal
from ocrflux.engines.base import Pair
from tests.fakes.control import ControlClient
from tests.fakes.validation import payload_key
from tests.scenarios import DocumentCase, page_images

GROUP = 8


@dataclass(frozen=True)
class Document:
    case: DocumentCase
    expected: str  # the document text after the merge

    @property
    def pages(self) -> int:
        return len(self.case.model_pages)


def _group(tag: str, group: int, tables: bool) -> tuple[list[list[str]], dict[int, Pair], str]:
    """Eight pages: their elements, the merge pair by first page (within the group), and the
    group's text after the merge."""
    name = f"{tag}-{group}"
    head = f"# {name} part"
    opening = f"{name} opens a paragraph that runs on"
    rest = f"onto the next page ({name})."
    alone = [f"{name} page {n} stands alone." for n in range(8)]
    hyphen, tail = f"{name} ends with a hyphenated exam-", f"ple word ({name})."
    pages = [
        [head, opening],
        [rest, alone[1]],
        [alone[2]],
        [alone[3]],
        [alone[4]],
        [alone[5]],
        [hyphen],
        [tail, alone[7]],
    ]
    pairs: dict[int, Pair] = {0: (1, 0), 6: (0, 0)}
    texts = [head, f"{opening} {rest}", alone[1], alone[2], alone[3]]
    if tables:
        row = "<tr><td>{}</td><td>{}</td></tr>"
        first = f"<table>{row.format(name, 'h')}{row.format('a', 1)}</table>"
        second = f"<table>{row.format('b', 2)}</table>"
        third = f"<table>{row.format('c', 3)}</table>"
        notes = f"{name} table notes."
        pages[3], pages[4], pages[5] = [alone[3], first], [second], [third, notes]
        pairs.update({3: (1, 0), 4: (0, 0)})
        merged = first.replace("</table>", row.format("b", 2) + row.format("c", 3) + "</table>")
        texts += [merged, notes]
    else:
        texts += [alone[4], alone[5]]
    texts += [f"{hyphen}{tail}", alone[7]]
    return pages, pairs, "\n\n".join(texts)


def merge_document(tag: str, pages: int = GROUP, *, tables: bool = True) -> Document:
    """A PDF of `pages` (a multiple of 8) different pages following the pattern above."""
    if pages < GROUP or pages % GROUP:
        raise ValueError(f"pages must be a multiple of {GROUP}")
    elements: list[list[str]] = []
    merges: dict[int, list[Pair]] = {}
    texts = []
    for group in range(pages // GROUP):
        found, pairs, text = _group(tag, group, tables)
        merges.update({group * GROUP + p: [pair] for p, pair in pairs.items()})
        elements += found
        texts.append(text)
    case = DocumentCase(
        name=f"{tag}.pdf",
        data=harness.make_pdf(pages, tag),
        model_pages=["\n\n".join(page) for page in elements],
        merges=merges,
    )
    return Document(case, "\n\n".join(texts))


def corpus(count: int, pages: int, label: str, *, tables: bool = True) -> list[Document]:
    return [merge_document(f"{label}{n}", pages, tables=tables) for n in range(count)]


def register(control: ControlClient, documents: Sequence[Document]) -> None:
    """Teach a double started with `--page-key bytes` the documents' pages and merge pairs
    (table merges get the double's default answer: the rows of table 2 appended)."""
    for document in documents:
        case = document.case
        for png, text in zip(page_images(case.data), case.model_pages, strict=True):
            control.register_page(payload_key(png), text)
        for first, pairs in case.merges.items():
            control.register_merges(case.elements(first), case.elements(first + 1), list(pairs))


def calls(
    documents: Sequence[Document], *, merge: bool = True, tables_after_detections: bool = False
) -> list[ideal.Call]:
    """The model calls the documents need (see bench/ideal.py)."""
    found: list[ideal.Call] = []
    for document in documents:
        case = document.case
        pages = [case.elements(p) for p in range(document.pages)]
        ideal.add_document(
            found,
            pages,
            case.merges,
            merge=merge,
            tables_after_detections=tables_after_detections,
        )
    return found
