"""The OCRFlux recognition core: bytes and settings in, typed results out.

Lives here: page rendering and input checks, the verbatim OCRFlux-3B prompts, the vLLM
(OpenAI-compatible) client, page parsing and matrix tables, cross-page merge and assembly,
markdown-to-text, the recognition engines and the direct driver (`convert_document`), plus the
thin entry modules (the CLI and `document_api_server_remote`) that only wire parts together.
May import `schemas/` only; the two entry modules may import every package, to wire them.
Must not live here: Kafka, faust, web-server code, or any second copy of the algorithm.
"""
