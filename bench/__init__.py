"""The benchmark suite: quality and speed measurements that are too slow for `make test`.

Each module runs on its own (`python -m bench.<name>`, or its `make bench-*` target), prints
its numbers and records them in BENCHMARKS.md (`--quick` runs a stream benchmark at a small
size, `--out FILE` writes elsewhere). `ideal.py` is the dependency-aware ideal the merge rows
are measured against, `corpus.py` the documents with known merges. Nothing here is imported by
the package.
"""
