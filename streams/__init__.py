"""The stream processor: the split, recognize and assemble roles, their handlers, the assembler's
changelog-backed state, and what every Kafka process shares: the small runtime over aiokafka
(`runtime/`), the Kafka settings and topic administration (`kafka/`) and the claim-check blob
stores with the one SSRF guard for outbound fetches (`blobstore/`).

May import `ocrflux/`, `schemas/` and `deploy/`, never `connectors/` (the edges build on this).
Must not live here: prompts, parsing, merging or any other part of the OCRFlux algorithm, and
nothing that talks HTTP to users.
"""
