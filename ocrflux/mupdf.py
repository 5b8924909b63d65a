"""PyMuPDF without the add-ons it loads on its own: `from ocrflux.mupdf import pymupdf`.

PyMuPDF 2.0 imports `pymupdf.layout` (which builds an ONNX Runtime session for its layout
model) and `pymupdf4llm` whenever they are installed, and they are its dependencies: `import
pymupdf` then takes 0.95 s and 140 MB instead of 0.16 s and 47 MB. We use neither (the table
finder runs with `use_layout=False`, see `ocrflux.ruled_tables`), and every process that renders
pays the import: each `ocrflux convert`, each worker and each render-pool process. So the two
are hidden while PyMuPDF imports; PyMuPDF then runs without them (`Page.get_layout` does
nothing), and an explicit `import pymupdf4llm` later still works.

Import PyMuPDF through this module, before any other module imports it.
"""

from __future__ import annotations

import sys

__all__ = ["ADDONS", "pymupdf"]

#: What PyMuPDF imports by itself when installed and the core never uses.
ADDONS = ("pymupdf.layout", "pymupdf4llm")

_hidden = [name for name in ADDONS if name not in sys.modules]
for _name in _hidden:
    sys.modules[_name] = None  # type: ignore[assignment]  # makes `import` raise ImportError
try:
    import pymupdf
finally:
    for _name in _hidden:
        if sys.modules.get(_name, False) is None:
            del sys.modules[_name]
