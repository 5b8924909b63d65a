"""`make run`: the whole pipeline on the sample documents, on the embedded default.

Starts the local Kafka broker unless `KAFKA_BOOTSTRAP_SERVERS` names one (or one already runs),
starts a worker with every role (vLLM when `VLLM_URL` is set, else the CPU `local` engine),
submits `examples/*.pdf` with `ocrflux submit --wait`, which writes each document's Markdown
next to it and prints a summary, then stops what it started, by PID.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from deploy import kafka_broker
from examples.make_examples import write_samples

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
WORKER_READY_TEXT = " ready: roles "
WORKER_READY_TIMEOUT_S = 180.0


def _ocrflux(*args: str) -> list[str]:
    return [sys.executable, "-m", "ocrflux.cli", *args]


def _wait_for_worker(process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + WORKER_READY_TIMEOUT_S
    while WORKER_READY_TEXT not in log.read_text(errors="replace"):
        if process.poll() is not None:
            raise SystemExit(f"the worker exited ({process.returncode}); see {log}")
        if time.monotonic() > deadline:
            raise SystemExit(
                f"the worker was not ready after {WORKER_READY_TIMEOUT_S:.0f}s; see {log}"
            )
        time.sleep(0.5)  # poll interval on the worker's log


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--folder",
        type=Path,
        default=EXAMPLES,
        help="where the samples and their Markdown go (default: examples/)",
    )
    folder = parser.parse_args(argv).folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    samples = write_samples(folder)
    env = dict(os.environ)
    started_broker = None
    if not env.get("KAFKA_BOOTSTRAP_SERVERS"):
        state, started = kafka_broker.start_default()
        started_broker = state if started else None
        print(
            f"Kafka {state.version} at {state.bootstrap}"
            f"{' (started for this run)' if started else ' (already running)'}"
        )
        env["KAFKA_BOOTSTRAP_SERVERS"] = state.bootstrap
    engine = "vllm at " + env["VLLM_URL"] if env.get("VLLM_URL") else "local (CPU)"
    print(f"engine: {engine}")
    log = kafka_broker.cache_home() / "run-worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        worker = subprocess.Popen(
            _ocrflux("worker"),
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        print(f"worker pid {worker.pid} starting (log: {log})")
        _wait_for_worker(worker, log)
        submitted = subprocess.run(
            _ocrflux(
                "submit", *map(str, samples), "--wait", "--out", str(folder), "--timeout", "600"
            ),
            cwd=REPO,
            env=env,
            check=False,
        )
        written = sorted(p.name for p in folder.glob("*.md"))
        print(f"Markdown written in {folder}: " + ", ".join(written))
        return submitted.returncode
    finally:
        worker.terminate()
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        if started_broker is not None:
            kafka_broker.stop_default()
            print("stopped the broker started for this run (keep one running: make broker)")


if __name__ == "__main__":
    sys.exit(main())
