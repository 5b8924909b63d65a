"""Conversion options: what a caller may ask for, and which of it changes the output.

A page selection is a string such as `1-3,7` (1-based, inclusive) or a list of `[first, last]`
ranges, parsed by `schemas.page_ranges` for every surface (CLI, Kafka records, HTTP API); it is
kept normalised (sorted, overlapping and adjacent ranges joined), so the same pages always give
the same options and the same `doc_id`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from schemas.page_ranges import PageRanges, normalise_pages, parse_pages

OutputFormat = Literal["markdown", "text", "json", "chunks"]
#: none: figures are left out (OCRFlux's behaviour); crop: each is cut out as a PNG and linked.
FiguresMode = Literal["none", "crop"]
EngineName = Literal["vllm", "local", "auto"]

#: The most attempts a caller may ask for per model task; more only burns GPU time on a page
#: the model has already failed to read several times at rising temperature.
MAX_ATTEMPTS_LIMIT = 10
#: Token budget of one chunk (`output_format=chunks`) unless the caller asks for another.
DEFAULT_CHUNK_TOKENS = 512
#: Below this a chunk holds a few words; above it no embedding model takes a chunk whole.
MIN_CHUNK_TOKENS, MAX_CHUNK_TOKENS = 32, 8192
#: A figure is cropped from its page rendered this many times larger than the model saw it.
DEFAULT_FIGURE_SCALE = 2.0
#: 1: the model's own 1024-px page; 4: a 4096-px page (about 200 dpi for A4), plenty for a figure.
MIN_FIGURE_SCALE, MAX_FIGURE_SCALE = 1.0, 4.0


def _pages_input(value: Any) -> Any:
    if isinstance(value, str):
        return parse_pages(value)
    if isinstance(value, list | tuple):
        return normalise_pages(value)
    return value


Pages = Annotated[
    PageRanges,
    BeforeValidator(_pages_input, json_schema_input_type=str | list[tuple[int, int]]),
]


#: Fields added after the first version of the records (see `ConversionOptions` serialization).
_ADDED_FIELDS = ("pages", "chunk_tokens", "figures", "figure_scale")


class ConversionOptions(BaseModel):
    """Options of one conversion, shared by the CLI, the HTTP API and the documents topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    output_format: OutputFormat = Field(
        default="markdown",
        description="markdown or text: the content; json: the whole result; chunks: "
        "heading-aware chunks of the Markdown for retrieval (see `ocrflux.result_formats`)",
    )
    max_page_retries: int = Field(default=1, ge=1, le=MAX_ATTEMPTS_LIMIT)
    skip_cross_page_merge: bool = False
    pages: Pages | None = Field(
        default=None,
        description='Pages to convert: "1-3,7" or [[1, 3], [7, 7]], 1-based and inclusive; '
        "kept sorted with overlaps joined. Cross-page merges run only between selected pages "
        "that are neighbours in the document.",
    )
    page_range: tuple[int, int] | None = Field(
        default=None,
        deprecated=True,
        description="First and last page to convert (the previous version's field): still "
        "accepted, and read as `pages`",
    )
    engine: EngineName | None = Field(
        default=None, description="Recognition engine; None means the worker's default."
    )
    chunk_tokens: int | None = Field(
        default=None,
        ge=MIN_CHUNK_TOKENS,
        le=MAX_CHUNK_TOKENS,
        description=f"Token budget of a chunk with output_format=chunks (default "
        f"{DEFAULT_CHUNK_TOKENS})",
    )

    figures: FiguresMode | None = Field(
        default=None,
        description="crop: every figure the model marks is cropped as a PNG and linked from "
        "the Markdown where it stood; none (also when unset): figures are left out",
    )
    figure_scale: float | None = Field(
        default=None,
        ge=MIN_FIGURE_SCALE,
        le=MAX_FIGURE_SCALE,
        description=f"How many times larger than the model's page image figures are cropped "
        f"from (default {DEFAULT_FIGURE_SCALE})",
    )

    @field_validator("figures")
    @classmethod
    def _none_is_unset(cls, value: FiguresMode | None) -> FiguresMode | None:
        # "none" is what an unset field means: the same options, hence the same doc_id
        return None if value == "none" else value

    @property
    def crop_figures(self) -> bool:
        return self.figures == "crop"

    @property
    def figure_zoom(self) -> float:
        return self.figure_scale or DEFAULT_FIGURE_SCALE

    @model_validator(mode="before")
    @classmethod
    def _page_range_as_pages(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("page_range") is not None:
            if data.get("pages") is not None:
                raise ValueError("give pages or page_range (the older name), not both")
            first, last = data["page_range"]
            if first < 1 or last < first:
                raise ValueError("page_range must be (first, last) with 1 <= first <= last")
            data = {**data, "pages": ((first, last),), "page_range": None}
        return data

    @model_serializer(mode="wrap")
    def _without_unset_additions(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Fields this version added are left out while unset, so options that use none of
        # them give the previous version's JSON: the same doc_id, and records that a worker
        # of the previous version still reads.
        data = handler(self)
        if isinstance(data, dict):
            for name in _ADDED_FIELDS:
                if data.get(name) is None:
                    data.pop(name, None)
        return data

    @model_validator(mode="after")
    def _chunk_tokens_with_chunks(self) -> ConversionOptions:
        if self.chunk_tokens is not None and self.output_format != "chunks":
            raise ValueError("chunk_tokens goes with output_format=chunks")
        if self.figure_scale is not None and not self.crop_figures:
            raise ValueError("figure_scale goes with figures=crop")
        return self
