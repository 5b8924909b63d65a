"""What a command loads before it works: each check runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.fakes.fixtures import REPO_ROOT


def loaded_after(statement: str, modules: list[str]) -> dict[str, bool]:
    """Which of `modules` are in `sys.modules` after `statement` in a new interpreter."""
    code = f"import sys\n{statement}\nprint(*[m in sys.modules for m in {modules!r}])"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return dict(zip(modules, (word == "True" for word in out), strict=True))


def test_the_command_line_parses_without_pydantic() -> None:
    # `ocrflux --version` and `--help` end while parsing: they must not pay for pydantic.
    assert loaded_after("import ocrflux.cli", ["pydantic", "pymupdf", "aiohttp"]) == {
        "pydantic": False,
        "pymupdf": False,
        "aiohttp": False,
    }


def test_settings_do_not_load_the_renderer() -> None:
    assert loaded_after("import ocrflux.settings", ["pymupdf", "PIL"]) == {
        "pymupdf": False,
        "PIL": False,
    }


def test_convert_loads_neither_renderer_nor_http_client_before_its_head_start() -> None:
    # Everything `ocrflux convert` imports before it forks the process rendering its pages is
    # paid before the first page renders; PyMuPDF and Pillow load in that child instead.
    assert loaded_after("import ocrflux.convert_command", ["pymupdf", "PIL", "aiohttp"]) == {
        "pymupdf": False,
        "PIL": False,
        "aiohttp": False,
    }


def test_the_head_start_forks_before_pydantic_loads() -> None:
    # `ocrflux convert` forks it right after parsing its command line: the child loads the
    # renderer while the parent loads pydantic, its settings and the HTTP client.
    statement = "import ocrflux.cli, ocrflux.head_start"
    assert loaded_after(statement, ["pydantic", "pymupdf", "PIL", "aiohttp"]) == {
        "pydantic": False,
        "pymupdf": False,
        "PIL": False,
        "aiohttp": False,
    }


def test_the_head_starts_renderer_loads_neither_pydantic_nor_asyncio() -> None:
    # What the child loads before it can render: the renderer alone, not what the parent loads.
    statement = "import ocrflux.render, ocrflux.head_start"
    assert loaded_after(statement, ["pydantic", "asyncio"]) == {"pydantic": False, "asyncio": False}


def test_the_direct_driver_renders_nothing_by_itself() -> None:
    # Pages of a head start arrive rendered: the driver and the vllm engine load no renderer.
    statement = "import ocrflux.convert, ocrflux.engines.factory, ocrflux.render_pool"
    assert loaded_after(statement, ["pymupdf", "PIL"]) == {"pymupdf": False, "PIL": False}


def test_the_merge_requests_load_no_pillow() -> None:
    # Detections attach a blank image; making it must not hold the first detection back.
    statement = "from ocrflux.prompts import blank_image_png; blank_image_png()"
    assert loaded_after(statement, ["PIL"]) == {"PIL": False}


@pytest.mark.parametrize(
    "statement",
    [
        "import ocrflux.render",
        "import streams.split_agent",
        "import ocrflux.textlayer",
    ],
)
def test_pymupdf_comes_without_its_layout_model_and_llm_helpers(statement: str) -> None:
    # PyMuPDF 2.0 imports both by itself when installed: 0.8 s and 90 MB nobody here uses.
    assert loaded_after(statement, ["pymupdf", "pymupdf.layout", "pymupdf4llm", "onnxruntime"]) == {
        "pymupdf": True,
        "pymupdf.layout": False,
        "pymupdf4llm": False,
        "onnxruntime": False,
    }


def test_an_explicit_import_of_an_add_on_still_works() -> None:
    # pymupdf4llm is one of PyMuPDF 2.0's dependencies: hidden while PyMuPDF imports, not after.
    statement = "import ocrflux.mupdf\nimport pymupdf4llm"
    assert loaded_after(statement, ["pymupdf4llm"]) == {"pymupdf4llm": True}
