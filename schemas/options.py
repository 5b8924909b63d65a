"""Conversion options: what a caller may ask for, and which of it changes the output."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

OutputFormat = Literal["markdown", "text"]
EngineName = Literal["vllm", "local", "auto"]

#: The most attempts a caller may ask for per model task; more only burns GPU time on a page
#: the model has already failed to read several times at rising temperature.
MAX_ATTEMPTS_LIMIT = 10


class ConversionOptions(BaseModel):
    """Options of one conversion, shared by the CLI, the HTTP API and the documents topic."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    output_format: OutputFormat = "markdown"
    max_page_retries: int = Field(default=1, ge=1, le=MAX_ATTEMPTS_LIMIT)
    skip_cross_page_merge: bool = False
    page_range: tuple[int, int] | None = Field(
        default=None, description="First and last page to convert, 1-based and inclusive."
    )
    engine: EngineName | None = Field(
        default=None, description="Recognition engine; None means the worker's default."
    )

    @model_validator(mode="after")
    def _check_page_range(self) -> ConversionOptions:
        if self.page_range is not None:
            first, last = self.page_range
            if first < 1 or last < first:
                raise ValueError("page_range must be (first, last) with 1 <= first <= last")
        return self
