"""Shared fixtures: the session's Kafka broker (tests/fixtures/kafka.py), child processes started
and ended by PID (tests/fixtures/processes.py) and the OCRFlux-3B test double
(tests/fakes/fixtures.py)."""

pytest_plugins = ["tests.fixtures.kafka", "tests.fixtures.processes", "tests.fakes.fixtures"]
