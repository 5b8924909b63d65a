"""The Kafka broker's jars: resolved by Maven from deploy/kafka/pom.xml into an ignored cache
folder once, then reused (Maven's own ~/.m2 cache makes a re-fetch offline and quick)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from pathlib import Path

from deploy.common import BrokerError, cache_home

POM_PATH = Path(__file__).resolve().parent / "kafka" / "pom.xml"


def kafka_version(pom: Path = POM_PATH) -> str:
    text = pom.read_text()
    start = text.index("<kafka.version>") + len("<kafka.version>")
    return text[start : text.index("</kafka.version>", start)]


def ensure_jars(pom: Path = POM_PATH, cache: Path | None = None) -> Path:
    """Resolve the broker's runtime jars with Maven once; later calls return the cached folder."""
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()[:12]
    jars = (cache or cache_home()) / "kafka" / f"jars-{kafka_version(pom)}-{digest}"
    if (jars / ".complete").exists():
        return jars
    if shutil.which("mvn") is None:
        raise BrokerError("Maven (mvn) is needed to fetch the Kafka jars; install maven")
    staging = Path(
        tempfile.mkdtemp(
            prefix="jars-", dir=jars.parent if jars.parent.exists() else _mkdir(jars.parent)
        )
    )
    cmd = [
        "mvn",
        "-B",
        "-q",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise BrokerError(
            f"mvn failed to fetch Kafka jars:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    (staging / ".complete").write_text(digest)
    shutil.rmtree(jars, ignore_errors=True)
    staging.rename(jars)
    return jars


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
