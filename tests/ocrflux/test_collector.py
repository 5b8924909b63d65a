"""The collector paused while a one-shot command loads (`ocrflux.collector`); each case runs in
a fresh interpreter, as the command does, so that this test process's collector is untouched."""

from __future__ import annotations

import subprocess
import sys

from tests.fakes.fixtures import REPO_ROOT


def states(statement: str) -> list[str]:
    """`statement` in a new interpreter; it prints the collector's states as it goes."""
    code = (
        "import gc\n"
        "from ocrflux import collector\n"
        "def state(): print('on' if gc.isenabled() else 'off', gc.get_freeze_count() > 0)\n"
        f"{statement}\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


def test_paused_while_loading_then_frozen_and_back_on() -> None:
    assert states("collector.pause(); state(); collector.resume(); state()") == [
        "off False",
        "on True",  # what was loaded is left out of later collections
    ]


def test_a_collector_someone_else_turned_off_stays_off() -> None:
    statement = "gc.disable(); collector.pause(); collector.resume(); state()"
    assert states(statement) == ["off False"]


def test_resuming_without_a_pause_changes_nothing() -> None:
    assert states("collector.resume(); state()") == ["on False"]


def test_a_settled_process_leaves_what_was_alive_out_and_still_collects_new_cycles() -> None:
    statement = (
        "loaded = [[] for _ in range(1000)]\n"
        "collector.settle(); state()\n"
        "import weakref\n"
        "class Node: pass\n"
        "node = Node(); node.me = node; gone = weakref.ref(node); del node\n"
        "gc.collect(); print('cycle collected', gone() is None)"
    )
    assert states(statement) == ["on True", "cycle collected True"]
