"""Recognition engines behind one small interface (`Engine`): `vllm` drives OCRFlux-3B, `local`
reads text layers and runs CPU OCR. `open_engine` picks and builds one from settings."""

from ocrflux.engines.base import Engine
from ocrflux.engines.factory import open_engine, resolve_engine_name

__all__ = ["Engine", "open_engine", "resolve_engine_name"]
