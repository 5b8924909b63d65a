"""The test suite, mirroring the source tree: unit tests need no servers; integration tests use
the real Kafka broker, loopback HTTP servers and the OCRFlux test double through shared fixtures.

Nothing here is imported by production code; the OCRFlux-3B stand-in in `tests/fakes/` is a test
double, not a model.
"""
