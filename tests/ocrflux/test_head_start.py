"""`ocrflux convert`'s head start: pages rendered by a forked child while the command loads.

Each scenario runs in a fresh interpreter, as `ocrflux convert` does: a head start forks only
from a process without other threads, and this test process has some (test doubles, sites).
The scenario forks the head start, hands it the document as the command does once it has read
it (`forked`), compares what the head start hands out with what `open_document` renders in the
same process afterwards, and reports whether the parent had loaded PyMuPDF meanwhile.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from tests.fakes.fixtures import REPO_ROOT
from tests.ocrflux.docgen import images_pdf, make_pdf, make_scan, make_tiff

_PRELUDE = """
import json, os, signal, sys, threading
from pathlib import Path
from ocrflux.errors import InputError
from ocrflux.head_start import HeadStart
from ocrflux.pages import PoolRule, open_options
from schemas.page_ranges import parse_pages

data = Path(sys.argv[1]).read_bytes()
how = open_options("vllm")
pages = parse_pages(sys.argv[2]) if sys.argv[2] else None
report = {}


NO_POOL = PoolRule(processes=0, min_pages=32)


def forked(options=how, in_pool=NO_POOL):
    start = HeadStart.fork()
    start.render(data, options, pages=pages, in_pool=in_pool)
    return start


def reaped(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def same_as_renderer(taken, indices):
    loaded = "pymupdf" in sys.modules
    document = how.open(data)
    expected = [document.render_page(i) for i in indices]
    document.close()
    return {"renderer_loaded_before": loaded, "same": taken == expected}
"""


def scenario(tmp_path: Path, body: str, data: bytes, pages: str = "") -> dict[str, object]:
    """Run `body` after `_PRELUDE` on `data` in a new interpreter; its `report`, as JSON."""
    source = tmp_path / "input"
    source.write_bytes(data)
    code = f"{_PRELUDE}\n{body}\nprint(json.dumps(report))"
    done = subprocess.run(
        [sys.executable, "-c", code, str(source), pages],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return report


def _two_noisy_scans() -> bytes:
    """A scanned PDF of about 4 MB: noise deflates badly."""
    scans = [make_scan(make_pdf([text]), noise=40, seed=n) for n, text in enumerate("ab")]
    data = images_pdf(scans)
    assert len(data) > 2 * 1024 * 1024
    return data


_TAKE_EVERY_PAGE = """
start = forked()
document = start.open(data, how)
indices = document.page_indices(pages)
taken = [document.render_page(i) for i in indices]
report["indices"] = indices
report["page_count"] = document.page_count
report.update(same_as_renderer(taken, indices))
here = how.open(data)  # what the pages do not carry comes from the parent's own copy
report["text_layer"] = document.text_layer(indices[0]) == here.text_layer(indices[0])
with document.render_image(indices[0], 2.0) as image, here.render_image(indices[0], 2.0) as own:
    report["figure_source"] = image.tobytes() == own.tobytes()
here.close()
pid = start.pid
document.close()
report["child_reaped"] = reaped(pid)
report["threads_left"] = [thread.name for thread in threading.enumerate()][1:]
"""


@pytest.mark.parametrize(
    ("document", "pages", "indices", "count"),
    [
        (partial(make_pdf, ["one", "two", "three", "four", "five"]), "2-3,5", [1, 2, 4], 5),
        (partial(make_tiff, [((300, 200), "white"), ((200, 300), "yellow")]), "", [0, 1], 2),
        # Larger than the pipe holds: the child reads it while the parent goes on.
        (_two_noisy_scans, "", [0, 1], 2),
    ],
    ids=["pdf-page-selection", "tiff-frames", "scans-larger-than-a-pipe"],
)
def test_the_head_start_hands_out_the_renderers_pages_without_loading_it(
    tmp_path: Path, document: Callable[[], bytes], pages: str, indices: list[int], count: int
) -> None:
    report = scenario(tmp_path, _TAKE_EVERY_PAGE, document(), pages)
    assert report == {
        "indices": indices,
        "page_count": count,
        "renderer_loaded_before": False,  # the pages came from the child
        "same": True,
        "text_layer": True,
        "figure_source": True,
        "child_reaped": True,
        "threads_left": [],  # the document was handed over
    }


def test_an_input_the_child_rejects_fails_as_opening_it_here_would(tmp_path: Path) -> None:
    body = """
start = forked()
try:
    start.open(data, how)
except InputError as exc:
    report["head_start"] = [type(exc).__name__, exc.message]
report["child_reaped"] = reaped(start.pid) if start.pid else True
try:
    how.open(data)
except InputError as exc:
    report["here"] = [type(exc).__name__, exc.message]
"""
    report = scenario(tmp_path, body, make_pdf(["secret"], user_password="pw"))
    assert report["head_start"] == report["here"]
    assert report["here"] == ["EncryptedInput", "the PDF is password-protected"]
    assert report["child_reaped"] is True


def test_a_head_start_rendering_another_way_or_declined_is_not_used(tmp_path: Path) -> None:
    body = """
local = open_options("local")  # `auto` took the local engine: text layers with tables
start = forked()
pid = start.pid
report["other_mode"] = start.open(data, local) is None
report["other_mode_reaped"] = reaped(pid)
start = forked(in_pool=PoolRule(processes=1, min_pages=2))
pid = start.pid
report["pool_document"] = start.open(data, how) is None
report["pool_document_reaped"] = reaped(pid)
start = HeadStart.fork()  # the command failed before reading its input
pid = start.pid
report["no_document"] = start.open(data, how) is None
report["no_document_reaped"] = reaped(pid)
"""
    report = scenario(tmp_path, body, make_pdf(["one", "two"]))
    assert report == {
        "other_mode": True,
        "other_mode_reaped": True,
        "pool_document": True,
        "pool_document_reaped": True,
        "no_document": True,
        "no_document_reaped": True,
    }


def test_pages_a_dead_child_did_not_deliver_are_rendered_here(tmp_path: Path) -> None:
    body = """
start = forked()
document = start.open(data, how)
first = document.render_page(0)
os.kill(start.pid, signal.SIGKILL)  # this process forked it: as if MuPDF had crashed
os.waitpid(start.pid, 0)
start.pid = 0  # reaped here
taken = [first] + [document.render_page(i) for i in range(1, document.page_count)]
report.update(same_as_renderer(taken, list(range(document.page_count))))
document.close()
"""
    # More pages than a pipe holds (64 KiB): the child cannot have sent them all already.
    data = make_pdf([f"page {n}" for n in range(1, 41)])
    report = scenario(tmp_path, body, data)
    assert report == {"renderer_loaded_before": True, "same": True}


def test_no_head_start_from_a_process_running_other_threads(tmp_path: Path) -> None:
    body = """
stop = threading.Event()
thread = threading.Thread(target=stop.wait)
thread.start()
report["forked"] = HeadStart.fork() is not None
stop.set()
thread.join()
"""
    assert scenario(tmp_path, body, make_pdf(["one"])) == {"forked": False}
