"""The committed JSON Schema files match the models (`make schemas` regenerates them)."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.export import EXPORTED, JSON_DIR, expected_files, main, stale_files, write


def test_committed_schema_files_are_current() -> None:
    stale = stale_files(JSON_DIR)
    assert stale == [], f"stale JSON Schema files {stale}: run `make schemas`"


def test_one_file_per_exported_model_with_stable_text() -> None:
    files = expected_files()
    assert set(files) == {f"{name}.schema.json" for name in EXPORTED}
    assert files == expected_files()
    for text in files.values():
        assert text.endswith("}\n")
        schema = json.loads(text)
        assert text == json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        assert schema["properties"]["schema_version"]["const"] == 1


def test_write_and_check(tmp_path: Path) -> None:
    assert main(["--check", "--dir", str(tmp_path)]) == 1
    (tmp_path / "retired.schema.json").write_text("{}\n")
    write(tmp_path)
    assert not (tmp_path / "retired.schema.json").exists()
    assert main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "progress.schema.json").write_text("{}\n")
    assert stale_files(tmp_path) == ["progress.schema.json"]
