"""A real single-node Apache Kafka 4.x broker (KRaft) on loopback, from Maven Central jars.

Used by `ocrflux broker start|stop|status`, by `make run` and by the test fixtures when no
`KAFKA_BOOTSTRAP_SERVERS` is given and no Docker engine answers. The jars are resolved by Maven
from `deploy/kafka/pom.xml` into an ignored cache folder; nothing downloaded enters git.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from base64 import urlsafe_b64encode
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from deploy.common import BrokerError, cache_home
from deploy.kafka_jars import ensure_jars, kafka_version
from deploy.processes import accepts, pid_alive, stop_pid

#: The largest record any of our producers sends (page PNGs, inline documents, results) stays
#: below this; producers, consumers and the broker are configured together around it.
DEFAULT_MESSAGE_MAX_BYTES = 16 * 1024 * 1024

READINESS_TOPIC = "__ocrflux_readiness"


def default_state_file() -> Path:
    return cache_home() / "kafka" / "broker.json"


@dataclass(frozen=True)
class BrokerState:
    """What a started broker leaves behind so that other commands can find and stop it."""

    pid: int
    bootstrap: str
    version: str
    work_dir: str
    log_file: str
    started_at: float

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> BrokerState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError) as exc:
            raise BrokerError(f"unreadable broker state file {path}: {exc}") from exc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ports(work_dir: Path) -> tuple[int, int]:
    """The ports this storage folder used before when they are still free (clients that kept
    the old address keep working after a restart), else new free ones."""
    saved = work_dir / "ports.json"
    try:
        port, controller_port = json.loads(saved.read_text())
        if not (accepts("127.0.0.1", port) or accepts("127.0.0.1", controller_port)):
            return int(port), int(controller_port)
    except (OSError, ValueError, TypeError):
        pass
    ports = free_port(), free_port()
    saved.write_text(json.dumps(ports))
    return ports


def _cluster_id(work_dir: Path) -> str:
    """One cluster id per storage folder: formatted storage refuses any other on restart."""
    saved = work_dir / "cluster.id"
    if saved.exists():
        return saved.read_text().strip()
    cluster_id = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    saved.write_text(cluster_id)
    return cluster_id


def _server_properties(work_dir: Path, port: int, controller_port: int, max_bytes: int) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(work_dir / "data"),
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "message.max.bytes": str(max_bytes),
        "replica.fetch.max.bytes": str(max_bytes),
        "socket.request.max.bytes": str(max(max_bytes * 2, 104857600)),
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


_LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.controller.name = org.apache.kafka.controller
logger.controller.level = WARN
"""


def _java_command(jars: Path, work_dir: Path, main: str, *args: str) -> list[str]:
    return [
        "java",
        "-Xms256m",
        "-Xmx1g",
        "-XX:+UseG1GC",
        f"-Dlog4j2.configurationFile=file:{work_dir / 'log4j2.properties'}",
        "-cp",
        f"{jars}/*",
        main,
        *args,
    ]


def start_broker(
    work_dir: Path,
    *,
    jars: Path | None = None,
    max_bytes: int = DEFAULT_MESSAGE_MAX_BYTES,
    ready_timeout_s: float = 120.0,
) -> BrokerState:
    """Format storage in `work_dir`, start the broker and return once it accepts a topic."""
    jars = jars or ensure_jars()
    work_dir.mkdir(parents=True, exist_ok=True)
    port, controller_port = _ports(work_dir)
    config = work_dir / "server.properties"
    config.write_text(_server_properties(work_dir, port, controller_port, max_bytes))
    (work_dir / "log4j2.properties").write_text(_LOG4J2)
    cluster_id = _cluster_id(work_dir)
    fmt = subprocess.run(
        _java_command(
            jars,
            work_dir,
            "kafka.tools.StorageTool",
            "format",
            # "=" keeps an id that starts with "-" (url-safe base64 may) from reading as a flag
            f"--cluster-id={cluster_id}",
            "-c",
            str(config),
            "--ignore-formatted",
        ),
        capture_output=True,
        text=True,
        check=False,
    )
    if fmt.returncode != 0:
        raise BrokerError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")
    log_file = work_dir / "broker.log"
    with log_file.open("ab") as log:
        process = subprocess.Popen(
            _java_command(jars, work_dir, "kafka.Kafka", str(config)),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    state = BrokerState(
        pid=process.pid,
        bootstrap=f"127.0.0.1:{port}",
        version=kafka_version(),
        work_dir=str(work_dir),
        log_file=str(log_file),
        started_at=time.time(),
    )
    try:
        _wait_until_ready(state, process, ready_timeout_s)
    except BaseException:
        stop_pid(process.pid)
        raise
    return state


def _wait_until_ready(
    state: BrokerState, process: subprocess.Popen[bytes], timeout_s: float
) -> None:
    def exited() -> str | None:
        if process.poll() is None:
            return None
        return f"Kafka exited with code {process.returncode}"

    try:
        wait_until_ready(state.bootstrap, timeout_s, exited)
    except BrokerError as exc:
        raise BrokerError(f"{exc}; log tail:\n{_tail(Path(state.log_file))}") from None


def wait_until_ready(
    bootstrap: str, timeout_s: float, failure: Callable[[], str | None] = lambda: None
) -> None:
    """Return once the listener accepts and an admin client can create a topic.

    `failure` is polled meanwhile; a message from it ends the wait at once (the process died).
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    deadline = time.monotonic() + timeout_s
    host, port = bootstrap.rsplit(":", 1)
    last_error = "the listener never accepted a connection"
    while not accepts(host, int(port)):
        _raise_if(failure())
        if time.monotonic() > deadline:
            raise BrokerError(f"Kafka not ready after {timeout_s:.0f}s ({last_error})")
        time.sleep(0.2)  # poll interval while the JVM starts
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 5000})
    while time.monotonic() < deadline:
        _raise_if(failure())
        futures = admin.create_topics(
            [NewTopic(READINESS_TOPIC, 1, 1)], operation_timeout=5, request_timeout=5
        )
        try:
            futures[READINESS_TOPIC].result(timeout=10)
            return
        except KafkaException as exc:
            error = exc.args[0]
            if getattr(error, "code", lambda: None)() == _topic_exists_code():
                return
            last_error = str(exc)
        time.sleep(0.5)  # poll interval while the broker finishes starting
    raise BrokerError(f"Kafka not ready after {timeout_s:.0f}s ({last_error})")


def _raise_if(message: str | None) -> None:
    if message is not None:
        raise BrokerError(message)


def _topic_exists_code() -> int:
    from confluent_kafka import KafkaError

    return int(KafkaError.TOPIC_ALREADY_EXISTS)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def is_our_broker(state: BrokerState) -> bool:
    """The PID still runs the broker we started (PIDs get reused after a reboot)."""
    if not pid_alive(state.pid):
        return False
    try:
        cmdline = Path(f"/proc/{state.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return True
    return "kafka.Kafka" in cmdline and state.work_dir in cmdline


def running_state(state_file: Path | None = None) -> BrokerState | None:
    state = BrokerState.load(state_file or default_state_file())
    if state is not None and is_our_broker(state):
        return state
    return None


def start_default(state_file: Path | None = None) -> tuple[BrokerState, bool]:
    """Start the project's default broker unless it already runs. Returns (state, started)."""
    state_file = state_file or default_state_file()
    existing = running_state(state_file)
    if existing is not None:
        return existing, False
    state = start_broker(state_file.parent / "broker")
    state.save(state_file)
    return state, True


def stop_default(state_file: Path | None = None) -> BrokerState | None:
    """Stop the broker recorded in the state file (that PID only). Returns what was stopped."""
    state_file = state_file or default_state_file()
    state = BrokerState.load(state_file)
    if state is None:
        return None
    if is_our_broker(state):
        stop_pid(state.pid)
    state_file.unlink(missing_ok=True)
    return state


NO_BROKER_MESSAGE = (
    "no Kafka broker configured: set KAFKA_BOOTSTRAP_SERVERS=host:port to use an existing one, "
    "or start a local broker with `ocrflux broker start` (or `make broker`)"
)


def resolve_bootstrap(explicit: str | None = None, state_file: Path | None = None) -> str:
    """The bootstrap address every Kafka-speaking command uses.

    Order: an explicit value (`KAFKA_BOOTSTRAP_SERVERS` via settings), else the running local
    broker's state file, else a `BrokerError` that says how to start or name a broker.
    """
    if explicit:
        return explicit
    from_env = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if from_env:
        return from_env
    state = running_state(state_file)
    if state is None:
        raise BrokerError(NO_BROKER_MESSAGE)
    return state.bootstrap
