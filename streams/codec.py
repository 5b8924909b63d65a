"""The faust codec of the assembler's table values (pydantic models chosen by their `kind`)."""

from __future__ import annotations

from typing import Annotated, Any

from faust.serializers import codecs
from pydantic import Field, TypeAdapter

from streams.assembly import DocState, StoredPage, StoredTable

NAME = "ocrflux-state"

_STATE = TypeAdapter(Annotated[DocState | StoredPage | StoredTable, Field(discriminator="kind")])


class StateCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return obj.model_dump_json().encode()  # type: ignore[no-any-return]

    def _loads(self, s: bytes) -> Any:
        return _STATE.validate_json(s)


def register() -> None:
    if NAME not in codecs.codecs:
        codecs.register(NAME, StateCodec())
