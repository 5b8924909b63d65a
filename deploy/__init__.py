"""How the system's servers are run: the on-demand Apache Kafka broker (Maven recipe, storage
format, start, readiness, stop by PID), the system packages the tests need, vLLM start scripts
and compose extras.

Imports nothing of the product (`streams/` uses the broker's address and cache folder from
here). Must not live here: application logic; code here starts and stops processes and writes
their configuration, nothing more.
"""
