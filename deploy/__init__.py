"""How the system's servers are run: the on-demand Apache Kafka broker (Maven recipe, storage
format, start, readiness, stop by PID), vLLM start scripts and compose extras.

Must not live here: application logic; code here starts and stops processes and writes their
configuration, nothing more.
"""
