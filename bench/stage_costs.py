"""CPU cost of each of our stages, measured in-process (thread CPU time) on the same pages the
pipeline handles: what each worker does to a page besides talking to Kafka and HTTP.

The functions are the ones the workers call (rendering, record encoding and parsing, the model
request body and answer, the assembler), run one after the other on the pages of a document;
`stage_costs` returns CPU milliseconds per page for each, keyed by (worker, stage).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TypeVar

import pymupdf

from ocrflux import prompts
from ocrflux.chat import ChatRequest
from ocrflux.page_parse import page_elements, parse_page_answer
from ocrflux.render import _pixmap_png, open_document, target_size
from ocrflux.vllm_wire import encode_request_body, parse_completion
from schemas.codec import json_bytes
from schemas.options import ConversionOptions
from schemas.records import DocumentInfo, PageDone, PageTask, ProgressEvent, decode, encode
from schemas.results import PageResult
from streams.assembly import Assembler
from tests.fakes.truth import page_answer

T = TypeVar("T")
Costs = dict[tuple[str, str], float]


class _Clock:
    """Sums the thread CPU time of the calls it wraps, per (worker, stage)."""

    def __init__(self) -> None:
        self.spent: dict[tuple[str, str], float] = {}

    def time(self, worker: str, stage: str, call: Callable[[], T]) -> T:
        began = time.thread_time()
        value = call()
        key = (worker, stage)
        self.spent[key] = self.spent.get(key, 0.0) + time.thread_time() - began
        return value


class _ChangelogStore(dict[str, Any]):
    """The assembler's table as the worker keeps it: every value written is also encoded as
    JSON for the changelog topic."""

    def __setitem__(self, key: str, value: Any) -> None:
        json_bytes(value)
        super().__setitem__(key, value)


def _completion(content: str) -> bytes:
    """An answer body shaped like the double's (and vLLM's)."""
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 0,
            "model": "ChatDOC/OCRFlux-3B",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "tool_calls": []},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1000, "completion_tokens": len(content) // 4},
        }
    ).encode()


def stage_costs(pdf: bytes, options: ConversionOptions) -> Costs:
    """CPU ms per page of each stage over every page of `pdf`."""
    clock = _Clock()
    with open_document(pdf) as opened:
        count = opened.page_count
    doc = pymupdf.open(stream=pdf, filetype="pdf")
    info = DocumentInfo(first_page=0, stop_page=count, num_pages=count, options=options)
    dones: list[bytes] = []
    for index in range(count):
        page = clock.time("split", "render: rasterise", lambda i=index: doc.load_page(i))
        width, height = target_size(page.rect.width, page.rect.height)
        matrix = pymupdf.Matrix(width / page.rect.width, height / page.rect.height)
        pixmap = clock.time(
            "split",
            "render: rasterise",
            lambda p=page, m=matrix: p.get_pixmap(matrix=m, colorspace=pymupdf.csRGB, alpha=False),
        )
        png = clock.time("split", "render: PNG encode", lambda p=pixmap: _pixmap_png(p))
        # Split leaves the text layer out for the vllm engine (taken only for a failed page).
        task = PageTask(
            doc_id="d" * 64,
            page=index,
            info=info,
            png=png,
            width=width,
            height=height,
            text_layer_deferred=True,
        )
        value = clock.time("split", "encode page task (JSON, base64)", lambda t=task: encode(t))
        dones.append(_recognize(clock, value))
    doc.close()
    _assemble(clock, dones)
    return {key: spent * 1000 / count for key, spent in clock.spent.items()}


def _recognize(clock: _Clock, value: bytes) -> bytes:
    worker = "recognize"
    task = clock.time(worker, "parse page task (JSON, base64)", lambda: decode(value))
    assert isinstance(task, PageTask)
    request = ChatRequest(prompts.page_prompt(), task.png, 0.0, 8192)
    clock.time(
        worker,
        "model request body (base64, JSON)",
        lambda: encode_request_body("ChatDOC/OCRFlux-3B", request, 8192),
    )
    raw = _completion(page_answer(f"Unregistered page {task.page:012d}"))

    def parse() -> list[str]:
        answer = parse_completion(200, raw, 0.1)
        return page_elements(parse_page_answer(answer.content).natural_text)

    elements = clock.time(worker, "parse model answer", parse)
    result = PageResult(index=task.page, elements=elements, source="model", attempts=1)
    done = PageDone(doc_id=task.doc_id, info=task.info, result=result, worker="bench")
    return clock.time(worker, "encode page result (JSON)", lambda: encode(done))


def _assemble(clock: _Clock, values: list[bytes]) -> None:
    worker = "assemble"
    store: MutableMapping[str, Any] = _ChangelogStore()
    assembler = Assembler(store)
    for value in values:
        record = clock.time(worker, "parse page result (JSON)", lambda v=value: decode(v))
        assert isinstance(record, PageDone)

        def apply(r: PageDone = record) -> None:
            step = assembler.apply(r, partition=0, at=time.time())
            if step.progress is not None:
                encode(step.progress)
            if step.result is not None:
                encode(step.result)
                assembler.mark_emitted(step)
                encode(ProgressEvent(doc_id=r.doc_id, stage="completed"))

        clock.time(worker, "assemble (state, changelog values, result)", apply)
