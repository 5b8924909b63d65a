"""The documents every stream and fault case sends, with their known answers.

Eight small documents from `tests.scenarios.generated_cases` (PDFs, a PNG, a JPEG and two
multi-page TIFFs, 1 to 4 pages, with paragraphs and tables that run across pages, so merge
detection and table merges are exercised too). The test double is taught their pages by pixel
identity; the page keys are computed once here, so teaching a fresh double is a few HTTP calls.

The baseline is the direct driver's result for each document against a double with no fault:
what every driver must produce when nothing is degraded, and how many model requests of each
kind the documents need.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ocrflux.convert import convert_document
from ocrflux.engines.vllm import VllmEngine
from ocrflux.vllm_client import VllmClient
from schemas.options import ConversionOptions
from schemas.results import DocumentResult
from tests.fakes.control import ControlClient
from tests.fakes.truth import image_key
from tests.scenarios import DocumentCase, generated_cases, page_images

DOCUMENTS = 8
MAX_PAGES = 4
SEED = 61
#: The default client settings of `ocrflux convert` and the worker (CoreSettings).
MAX_TOKENS = 8192
MODEL_MAX_LEN = 16384


@dataclass
class Corpus:
    cases: list[DocumentCase]
    keys: dict[str, list[str]]  # case name -> page keys
    baseline: dict[str, DocumentResult] = field(default_factory=dict)
    needed: dict[str, int] = field(default_factory=dict)

    @property
    def pages(self) -> int:
        return sum(len(keys) for keys in self.keys.values())

    def teach(self, control: ControlClient) -> None:
        """Register every page, merge pair and table merge with a double."""
        for case in self.cases:
            for key, text in zip(self.keys[case.name], case.model_pages, strict=True):
                control.register_page(key, text)
            for first, pairs in case.merges.items():
                control.register_merges(case.elements(first), case.elements(first + 1), pairs)
            for table1, table2, merged in case.table_merges:
                control.register_table_merge(table1, table2, merged)

    def case(self, name: str) -> DocumentCase:
        return next(case for case in self.cases if case.name == name)


def build() -> Corpus:
    cases = generated_cases(DOCUMENTS, seed=SEED, max_pages=MAX_PAGES)
    keys = {case.name: [image_key(png) for png in page_images(case.data)] for case in cases}
    return Corpus(cases, keys)


async def direct_results(
    corpus: Corpus, url: str, options: ConversionOptions
) -> dict[str, DocumentResult]:
    """Every document through the direct driver (in this process) against the double at `url`."""
    async with VllmClient([url]) as client:
        engine = VllmEngine(
            client, model=client.model, max_tokens=MAX_TOKENS, model_max_len=MODEL_MAX_LEN
        )
        results = await asyncio.gather(
            *(
                convert_document(case.data, engine=engine, options=options, source=case.name)
                for case in corpus.cases
            )
        )
    return {case.name: result for case, result in zip(corpus.cases, results, strict=True)}


def requests_by_task(stats: dict[str, Any], status: str | None = None) -> dict[str, int]:
    """Model requests the double received per task, from its `/_test/stats`: all of them, or
    those it answered with `status` ("200": an answer was sent)."""
    found: Counter[str] = Counter()
    for task, statuses in stats.get("by_task", {}).items():
        found[task] += sum(n for s, n in statuses.items() if status is None or s == status)
    return dict(found)


def record_baseline(corpus: Corpus, control: ControlClient, options: ConversionOptions) -> None:
    """Convert the corpus with the direct driver against a taught double with no fault."""
    control.reset("stats")
    corpus.baseline = asyncio.run(direct_results(corpus, control.url, options))
    bad = {n: r.status for n, r in corpus.baseline.items() if r.status != "completed"}
    if bad:
        raise RuntimeError(f"the baseline did not complete: {bad}")
    corpus.needed = requests_by_task(control.stats())
