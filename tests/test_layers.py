"""The packages depend one way: connectors -> streams -> ocrflux -> schemas (deploy, which only
runs processes, sits beside them, below streams). The test walks every import statement of the
product, lazy ones inside functions included, so an arrow the wrong way fails here."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: What each package may import from the project's other top-level packages.
ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "ocrflux": {"schemas"},
    "deploy": {"examples"},  # run_examples writes the sample documents
    "streams": {"ocrflux", "schemas", "deploy"},
    "connectors": {"streams", "ocrflux", "schemas", "deploy"},
}
#: Entry modules that wire the layers together (their names are contracts: `ocrflux` and
#: `python -m ocrflux.document_api_server_remote`), so they may import any product package.
ENTRY_MODULES = {"ocrflux/cli.py", "ocrflux/document_api_server_remote.py"}
PROJECT = set(ALLOWED) | {"tests", "bench", "examples"}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """(top-level project package, line) of every absolute import in `path`."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update((name.split(".")[0], node.lineno) for name in names)
    return {(top, line) for top, line in found if top in PROJECT}


def wrong_way_imports() -> list[str]:
    wrong = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative in ENTRY_MODULES:
                continue
            for top, line in sorted(imported_packages(path)):
                if top != package and top not in allowed:
                    wrong.append(f"{relative}:{line} imports {top}")
    return wrong


def test_imports_point_one_way() -> None:
    assert wrong_way_imports() == []


def test_the_walk_sees_lazy_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from connectors.api import app\n    import streams.kafka\n")
    assert imported_packages(module) == {("connectors", 2), ("streams", 3)}
