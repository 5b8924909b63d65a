"""The faust stream processor: one app, its topics, the split / recognize / assemble agents and the
assembler's changelog-backed table.

Agents here are short loops that call the core in `ocrflux/` and the records in `schemas/`. Must
not live here: prompts, parsing, merging or any other part of the OCRFlux algorithm, and nothing
that talks HTTP to users.
"""
