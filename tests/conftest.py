"""Shared fixtures: the session's Kafka broker (tests/fixtures/kafka.py), child processes started
and ended by PID (tests/fixtures/processes.py), the OCRFlux-3B test double
(tests/fakes/fixtures.py) and the connectors' S3 and HTTP servers (tests/connectors/fixtures.py).
"""

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.processes",
    "tests.fakes.fixtures",
    "tests.connectors.fixtures",
    "tests.streams.fixtures",
    "tests.connectors.s3.fixtures",
    "tests.api.fixtures",
]
