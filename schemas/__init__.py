"""Pydantic models of every Kafka topic record and API payload, and their exported JSON Schema.

Lives here: the wire shapes (conversion options, page and document results, topic records) with
their `schema_version`, and the JSON codec that both Kafka clients share. Must not live here:
behaviour beyond validation and encoding, or imports of any other package of this project.
"""
