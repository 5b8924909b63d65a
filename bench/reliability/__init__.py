"""`make reliability`: the fault, outage, bad-input and API-abuse matrices of issue 12 against
the command's own Kafka broker and the OCRFlux-3B test double, written to RELIABILITY.md.

Run with `python -m bench.reliability` (see `__main__.py` for its options).
"""
