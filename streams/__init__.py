"""The stream processor: the split, recognize and assemble roles, their handlers, the assembler's
changelog-backed state, and the small Kafka runtime (`streams/runtime/`) that runs them.

Handlers here are short functions over the core in `ocrflux/` and the records in `schemas/`.
Must not live here: prompts, parsing, merging or any other part of the OCRFlux algorithm, and
nothing that talks HTTP to users.
"""
