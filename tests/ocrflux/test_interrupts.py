"""SIGINT ends a read-only command even when something swallows the KeyboardInterrupt."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from ocrflux.exit_codes import EXIT_INTERRUPTED

REPO_ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 60

# A command whose every KeyboardInterrupt is lost on its way (the loop stands in for a C
# extension's callback that does not pass the exception on). Everything after "ready" runs
# inside the `try`: Python raises the interrupt at whatever line runs when the signal lands,
# and one raised between "ready" and the `try` (a loop's jump, an assignment) ended the script
# by the signal (-2) instead of being swallowed.
SWALLOWER = """
import time
from ocrflux.interrupts import end_after_interrupt

end_after_interrupt("swallower", grace_s=GRACE)
interrupts = 0
announced = False
while True:
    try:
        if not announced:
            announced = True
            print("ready", flush=True)
        while True:
            time.sleep(0.01)
    except KeyboardInterrupt:
        interrupts += 1
        print(f"swallowed {interrupts}", flush=True)
"""


def _run_and_interrupt(code: str) -> tuple[int, str, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, stdout, stderr


def test_a_swallowed_interrupt_still_ends_the_process_with_130() -> None:
    code, stdout, stderr = _run_and_interrupt(SWALLOWER.replace("GRACE", "0.5"))
    assert code == EXIT_INTERRUPTED
    assert stdout == "swallowed 1\n"  # the interrupt was raised, and lost, before the end
    assert stderr == "swallower: interrupted; ended 0.5 s after the signal\n"


def test_an_interrupt_that_unwinds_ends_without_waiting_for_the_grace() -> None:
    code, _, stderr = _run_and_interrupt(
        "import time\n"
        "from ocrflux.interrupts import end_after_interrupt\n"
        "end_after_interrupt('unwinder', grace_s=3600)\n"
        "try:\n"
        "    print('ready', flush=True)\n"
        "    while True:\n"
        "        time.sleep(0.01)\n"
        "except KeyboardInterrupt:\n"
        "    raise SystemExit(130)\n"
    )
    assert code == EXIT_INTERRUPTED
    assert stderr == ""
